"""A real local Kubernetes control plane: etcd and kube-apiserver on free loopback ports.

Used by `hack/kubeenv`, the test suite and the demo. It runs the binaries that `hack/build-tools`
builds from pinned Go modules; nothing here fakes the API server. Standard library only (plus the
`openssl` command for certificates), so it runs before any virtualenv exists.

A control plane lives in a directory that holds its certificates, token file, kubeconfigs, logs
and `state.json` (ports and PIDs); etcd's data goes to tmpfs when there is one. Processes are
started detached, so `up` returns and `down` stops them later by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ADMIN_USER = "admin"
PLAIN_USER = "alice"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_dir() -> Path:
    """The folder with kube-apiserver and etcd: $LORA_KUBE_BIN_DIR, else built by hack/build-tools."""
    env = os.environ.get("LORA_KUBE_BIN_DIR")
    if env:
        return Path(env)
    out = subprocess.run(
        [str(REPO / "hack" / "build-tools")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _tmpfs_root() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class State:
    """What `up` started, persisted in DIR/state.json for `down` and `status`."""

    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    etcd_data_dir: str
    admin_token: str
    user_token: str
    etcd_pid: int | None = None
    apiserver_pid: int | None = None
    extra_apiserver_args: list[str] = field(default_factory=list)

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_client_port}"


class ControlPlane:
    """One local etcd + kube-apiserver pair rooted at a directory."""

    def __init__(self, directory: Path | str, *, binaries: Path | None = None) -> None:
        self.dir = Path(directory).resolve()
        self._binaries = binaries
        self.state: State | None = None
        if (self.dir / "state.json").exists():
            self.state = State(**json.loads((self.dir / "state.json").read_text()))

    # -- paths ------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def user_kubeconfig(self) -> Path:
        return self.dir / "kubeconfig-user"

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    def binaries(self) -> Path:
        if self._binaries is None:
            self._binaries = bin_dir()
        return self._binaries

    # -- lifecycle ----------------------------------------------------------------------------
    def up(self, *, extra_apiserver_args: list[str] | None = None, timeout: float = 60.0) -> State:
        """Start etcd and kube-apiserver, write the kubeconfigs and wait for /readyz."""
        if self.state is not None and self.is_running():
            raise ControlPlaneError(f"a control plane is already running in {self.dir}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binaries()
        self._write_pki()
        tmpfs = _tmpfs_root()
        data_dir = tempfile.mkdtemp(prefix="lora-etcd-", dir=str(tmpfs) if tmpfs else str(self.dir))
        self.state = State(
            etcd_client_port=free_port(),
            etcd_peer_port=free_port(),
            apiserver_port=free_port(),
            etcd_data_dir=data_dir,
            admin_token=secrets.token_hex(24),
            user_token=secrets.token_hex(24),
            extra_apiserver_args=list(extra_apiserver_args or []),
        )
        (self.dir / "tokens.csv").write_text(
            f'{self.state.admin_token},{ADMIN_USER},admin-uid,"system:masters"\n'
            f"{self.state.user_token},{PLAIN_USER},alice-uid\n"
        )
        os.chmod(self.dir / "tokens.csv", 0o600)
        self._write_kubeconfigs()
        try:
            self.start_etcd(timeout=timeout)
            self.start_apiserver(timeout=timeout)
        except BaseException:
            self.down()
            raise
        return self.state

    def _require_state(self) -> State:
        if self.state is None:
            raise ControlPlaneError(f"no control plane state in {self.dir}; run `up` first")
        return self.state

    def _save(self) -> None:
        st = self._require_state()
        (self.dir / "state.json").write_text(json.dumps(asdict(st), indent=2))

    def _spawn(self, argv: list[str], log_name: str) -> int:
        log = open(self.dir / log_name, "ab")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return proc.pid

    def start_etcd(self, *, timeout: float = 30.0) -> None:
        st = self._require_state()
        argv = [
            str(self.binaries() / "etcd"),
            "--name=lora-local",
            f"--data-dir={st.etcd_data_dir}",
            f"--listen-client-urls={st.etcd_url}",
            f"--advertise-client-urls={st.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{st.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{st.etcd_peer_port}",
            f"--initial-cluster=lora-local=http://127.0.0.1:{st.etcd_peer_port}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ]
        st.etcd_pid = self._spawn(argv, "etcd.log")
        self._save()
        self._wait(lambda: self._http_ok(f"{st.etcd_url}/health"), timeout, "etcd", "etcd.log")

    def start_apiserver(self, *, timeout: float = 60.0) -> None:
        st = self._require_state()
        pki = self.dir / "pki"
        argv = [
            str(self.binaries() / "kube-apiserver"),
            f"--etcd-servers={st.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={st.apiserver_port}",
            f"--tls-cert-file={pki / 'server.crt'}",
            f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer=https://127.0.0.1:{st.apiserver_port}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--api-audiences=https://127.0.0.1:{st.apiserver_port}",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=0",
            *st.extra_apiserver_args,
        ]
        st.apiserver_pid = self._spawn(argv, "kube-apiserver.log")
        self._save()
        self._wait(self.ready, timeout, "kube-apiserver", "kube-apiserver.log")

    def stop_apiserver(self) -> None:
        st = self._require_state()
        _kill(st.apiserver_pid)
        st.apiserver_pid = None
        self._save()

    def down(self) -> None:
        """Stop kube-apiserver and etcd by PID and remove etcd's data; keep logs and kubeconfigs."""
        if self.state is None:
            return
        _kill(self.state.apiserver_pid)
        _kill(self.state.etcd_pid)
        shutil.rmtree(self.state.etcd_data_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "state.json").unlink()
        self.state = None

    # -- probes -------------------------------------------------------------------------------
    def is_running(self) -> bool:
        st = self.state
        return st is not None and _alive(st.etcd_pid) and _alive(st.apiserver_pid)

    def ready(self) -> bool:
        st = self.state
        if st is None:
            return False
        return self._http_ok(f"{st.apiserver_url}/readyz", token=st.admin_token)

    def status(self) -> dict[str, Any]:
        st = self.state
        if st is None:
            return {"running": False, "dir": str(self.dir)}
        return {
            "dir": str(self.dir),
            "etcd": {"pid": st.etcd_pid, "alive": _alive(st.etcd_pid), "url": st.etcd_url},
            "apiserver": {
                "pid": st.apiserver_pid,
                "alive": _alive(st.apiserver_pid),
                "url": st.apiserver_url,
                "ready": self.ready(),
            },
            "kubeconfig": str(self.kubeconfig),
        }

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _http_ok(self, url: str, *, token: str | None = None) -> bool:
        req = urllib.request.Request(url)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        ctx = self._ssl_context() if url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _wait(self, probe: Any, timeout: float, what: str, log_name: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return
            time.sleep(0.1)
        tail = (self.dir / log_name).read_text(errors="replace")[-3000:]
        raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s; last log lines:\n{tail}")

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision (physically), so older watches get 410 Gone."""
        st = self._require_state()

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            req = urllib.request.Request(
                f"{st.etcd_url}{path}", data=json.dumps(body).encode(), method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result

        # A range read of any key returns the header with the store's current revision.
        rev = int(post("/v3/kv/range", {"key": "AA=="})["header"]["revision"])
        post("/v3/kv/compaction", {"revision": rev, "physical": True})
        return rev

    # -- files --------------------------------------------------------------------------------
    def _write_pki(self) -> None:
        pki = self.dir / "pki"
        if (pki / "server.crt").exists() and (pki / "sa.key").exists():
            return
        pki.mkdir(parents=True, exist_ok=True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
                 "-subj", "/CN=lora-controller-local-ca", cwd=pki)
        _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
                 "-subj", "/CN=kube-apiserver", cwd=pki)
        (pki / "server.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "server.crt", "-days", "3650",
                 "-extfile", "server.ext", cwd=pki)
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)

    def write_kubeconfig(self, path: Path, *, user: str, token: str) -> Path:
        """A kubeconfig for this API server authenticating with a bearer token."""
        st = self._require_state()
        import base64

        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lora-local", "cluster": {
                "server": st.apiserver_url, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": f"{user}@lora-local", "context": {
                "cluster": "lora-local", "user": user, "namespace": "default"}}],
            "current-context": f"{user}@lora-local",
        }
        # JSON is valid YAML: kubectl and kubernetes_asyncio read it as a kubeconfig.
        path.write_text(json.dumps(cfg, indent=2))
        os.chmod(path, 0o600)
        return path

    def _write_kubeconfigs(self) -> None:
        st = self._require_state()
        self.write_kubeconfig(self.kubeconfig, user=ADMIN_USER, token=st.admin_token)
        self.write_kubeconfig(self.user_kubeconfig, user=PLAIN_USER, token=st.user_token)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0): reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _kill(pid: int | None, *, grace: float = 10.0) -> None:
    if not pid or not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)
