"""End to end: the pruning smoke experiment through NNI's `remote` (SSH) training service, against an
OpenSSH server this test starts on 127.0.0.1 with throwaway keys.

The experiment is config.smoke.yml with only its `trainingService` block swapped for the one in
config.remote.yml (placeholders filled in): the move a user makes. Needs Debian's openssh-server
(`/usr/sbin/sshd`); skipped with that reason when it is missing.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.nnictl_utils import ROOT, SSHD, Experiment, free_port, suite_home
from tests.test_e2e_pruning import CONFIG as SMOKE
from tests.test_e2e_pruning import check_pruning_trials

REMOTE = ROOT / "experiments" / "pruning" / "config.remote.yml"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not SSHD.exists(), reason="needs /usr/sbin/sshd: apt-get install -y openssh-server"),
]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=60)


@pytest.fixture
def sshd(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A private sshd: own config, host key and user key, on a free port of 127.0.0.1; stopped afterwards
    together with the trial keeper NNI launches through it."""
    d = tmp_path / "sshd"
    d.mkdir()
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    remote_home = tmp_path / "remote-home"  # the "remote" user's home: NNI keeps ~/nni-experiments there
    remote_home.mkdir()
    shared = suite_home(tmp_path_factory.getbasetemp())  # "shared storage": the smoke cache
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / "host_key"}
AuthorizedKeysFile {d / "authorized_keys"}
PidFile {d / "sshd.pid"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
# What the remote machine's environment would hold: HOME keeps NNI's files in this test's tmp dir; pip
# must not reach an index (NNI's worker runs `pip install nni --upgrade`); the cache is "shared storage".
SetEnv HOME={remote_home} PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 NNI_SUITE_HOME={shared}
LogLevel ERROR
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir, missing in containers
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "wb"))  # noqa: SIM115
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, f"sshd exited: {(d / 'sshd.log').read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "sshd did not listen within 30 s"
                time.sleep(0.2)
        yield {"port": port, "user": getpass.getuser(), "key": d / "user_key", "home": remote_home,
               "suite_home": shared}
    finally:
        # NNI's remote trial keeper runs detached (its own process group, pid in trial_keeper.pid):
        # stop it and its trials first, then sshd.
        for pid_file in remote_home.glob("nni-experiments/*/environments/*/trial_keeper*/trial_keeper.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):  # already gone / half-written pid file
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        proc.terminate()
        proc.wait(30)


def test_pruning_smoke_experiment_over_ssh(tmp_path, sshd):
    service = yaml.safe_load(REMOTE.read_text())["trainingService"]
    machine = {k: v for k, v in service["machineList"][0].items() if k != "password"}
    machine.update(host="127.0.0.1", port=sshd["port"], user=sshd["user"], sshKeyFile=str(sshd["key"]),
                   pythonPath=str(Path(sys.executable).parent))  # the remote side must find this Python with nni
    service.update(machineList=[machine], nniManagerIp="127.0.0.1")
    # 3 of the config's trials: this is also the pruning smoke experiment's end-to-end run (tests/test_e2e_pruning.py)
    with Experiment(SMOKE, tmp_path, trainingService=service, maxTrialNumber=3) as exp:
        trials = exp.run_to_end(n_trials=3, timeout_s=900)
        remote_trials = list(sshd["home"].glob("nni-experiments/*/environments/*/trials/*/trial.log"))
        assert len(remote_trials) == 3, "the trials must have run on the SSH side, under the remote user's home"
        check_pruning_trials(exp, trials)
        for t in trials:
            assert t["result"]["cache_dir"] == str(sshd["suite_home"] / "artifacts")  # the remote side's cache
