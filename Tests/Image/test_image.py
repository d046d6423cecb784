"""The container image, run as the chart runs the pod: the Deployment's securityContext (user
65532, read-only root filesystem, every capability dropped, no privilege escalation), its
arguments, and its mounts of the policy and the serving certificate, all read from the chart
as Helm renders it. Then what the kubelet and the API server see: `certgate version`,
/healthz and /readyz over TLS, and /validate denying the seed's typo.

    CERTGATE_IMAGE_ARCHIVE=.build-image/certgate.oci.tar .venv-test/bin/python -m unittest Tests/Image/test_image.py

scripts/test-image builds nothing: it runs this against the archive scripts/image wrote.
The container shares the host's network (this sandbox has no bridge networking) and the
webhook and metrics ports are moved to free loopback ports; everything else is the chart's.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Chart"))
from test_chart import ROOT, container, find, make_ca, readme_install_commands, render  # noqa: E402

ARCHIVE = os.environ.get("CERTGATE_IMAGE_ARCHIVE") or os.path.join(ROOT, ".build-image", "certgate.oci.tar")
PODMAN_ENV = dict(os.environ, CONTAINERS_CONF=os.path.join(ROOT, "scripts", "containers.conf"))


def podman(*arguments: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *arguments], capture_output=True, text=True, timeout=timeout, env=PODMAN_ENV, check=check)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def moved(arguments: list[str], flag: str, value: str) -> list[str]:
    """`arguments` with `flag=...` given `value` instead (the flag must be there)."""
    assert any(a.startswith(flag + "=") for a in arguments), f"the chart no longer passes {flag}"
    return [f"{flag}={value}" if a.startswith(flag + "=") else a for a in arguments]


class ImageRunsAsTheChartRunsThePod(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert os.path.exists(ARCHIVE), f"no image archive at {ARCHIVE}: scripts/image writes it"
        loaded = podman("load", "--quiet", "-i", ARCHIVE).stdout
        match = re.search(r"Loaded image(?:\(s\))?: (\S+)", loaded)
        assert match, f"podman load printed no image name: {loaded}"
        cls.image = match.group(1)
        cls.workdir = tempfile.mkdtemp(prefix="certgate-image-")
        os.chmod(cls.workdir, 0o755)

        # The README's install in secret mode: the certificate comes from a mounted Secret.
        make_ca(cls.workdir)  # the CA file the README's secret-mode install passes with --set-file
        [command] = [c for c in readme_install_commands(cls.workdir) if c.mode == "secret"]
        objects = render(command.values, release=command.release, namespace=command.namespace)
        cls.deployment = find(objects, "Deployment")
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        cls.container = container(objects)
        policy = find(objects, "ConfigMap")["data"]["policy.yaml"]

        # The pod's volumes as the kubelet would project them: one folder per mount, files
        # readable by the pod's user and nothing else writable.
        cls.mounts = {}
        for mount in cls.container["volumeMounts"]:
            folder = os.path.join(cls.workdir, mount["name"])
            os.makedirs(folder)
            cls.mounts[mount["name"]] = (folder, mount)
        with open(os.path.join(cls.mounts["policy"][0], "policy.yaml"), "w") as file:
            file.write(policy)
        tls = cls.mounts["tls"][0]
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", os.path.join(tls, "tls.key"), "-out", os.path.join(tls, "tls.crt"), "-days", "2",
                        "-subj", "/CN=certgate.certgate.svc", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        for folder, _ in cls.mounts.values():
            for name in os.listdir(folder):
                os.chmod(os.path.join(folder, name), 0o644)
        cls.ca = os.path.join(tls, "tls.crt")

    def run_flags(self) -> list[str]:
        """podman run's flags for the pod's and the container's securityContext and mounts."""
        pod, own = self.pod["securityContext"], self.container["securityContext"]
        self.assertTrue(pod["runAsNonRoot"] and own["runAsNonRoot"])
        flags = ["--user", f"{pod['runAsUser']}:{pod['runAsGroup']}"]
        if own.get("readOnlyRootFilesystem"):
            flags.append("--read-only")
        for capability in own["capabilities"]["drop"]:
            flags.append(f"--cap-drop={capability}")
        if own.get("allowPrivilegeEscalation") is False:
            flags.append("--security-opt=no-new-privileges")
        self.assertFalse(own.get("privileged"))
        for folder, mount in self.mounts.values():
            flags.append(f"--volume={folder}:{mount['mountPath']}:{'ro' if mount.get('readOnly') else 'rw'}")
        for variable in self.container.get("env", []):
            if variable["name"] == "POD_NAMESPACE":
                flags.append("--env=POD_NAMESPACE=certgate")
        return flags

    def test_the_chart_runs_it_as_user_65532_read_only_without_capabilities(self):
        flags = self.run_flags()
        self.assertEqual(flags[:2], ["--user", "65532:65532"])
        for required in ("--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"):
            self.assertIn(required, flags)
        image_user = json.loads(podman("image", "inspect", self.image).stdout)[0]["Config"].get("User")
        self.assertEqual(image_user, "65532:65532", "the image's own USER is the chart's runAsUser")

    def test_inside_it_the_process_cannot_write_the_root_or_use_a_capability(self):
        probe = "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; touch /usr/local/bin/x 2>&1 || echo read-only"
        result = podman("run", "--rm", *self.run_flags(), "--entrypoint", "/bin/sh", self.image, "-c", probe)
        lines = result.stdout.split("\n")
        self.assertEqual(lines[:2], ["65532", "65532"], result.stdout)
        status = dict(re.findall(r"^(\w+):\s+(\S+)$", result.stdout, re.M))
        self.assertEqual(status.get("CapEff"), "0000000000000000", result.stdout)
        self.assertEqual(status.get("CapBnd"), "0000000000000000", result.stdout)
        self.assertEqual(status.get("NoNewPrivs"), "1", result.stdout)
        self.assertIn("Read-only file system", result.stdout)

    def test_certgate_version_runs_in_it(self):
        result = podman("run", "--rm", *self.run_flags(), self.image, "version")
        self.assertRegex(result.stdout.strip(), r"^certgate \d+\.\d+\.\d+")

    def test_it_serves_the_chart_s_arguments_and_denies_the_seeds_typo(self):
        webhook, metrics = free_port(), free_port()
        arguments = moved(moved(self.container["args"], "--port", str(webhook)), "--metrics-address", f"127.0.0.1:{metrics}")
        arguments.insert(1, "--address=127.0.0.1")
        name = f"certgate-image-test-{os.getpid()}"
        podman("run", "--detach", "--name", name, "--network=host", *self.run_flags(), self.image, *arguments)
        try:
            base = f"https://localhost:{webhook}"
            curl = ["curl", "-sS", "--max-time", "10", "--cacert", self.ca]
            deadline = time.monotonic() + 60
            health = None
            while time.monotonic() < deadline:
                health = subprocess.run(curl + [f"{base}/healthz"], capture_output=True, text=True)
                if health.returncode == 0:
                    break
                if podman("container", "exists", name, check=False).returncode != 0 or \
                        podman("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
                    break
                time.sleep(0.5)
            logs = podman("logs", name, check=False)
            self.assertEqual(health.stdout.strip(), "ok", f"/healthz: {health.stderr}\n{logs.stdout}{logs.stderr}")
            ready = subprocess.run(curl + ["-w", "\n%{http_code}", f"{base}/readyz?verbose"], capture_output=True, text=True)
            self.assertTrue(ready.stdout.endswith("\n200"), ready.stdout + ready.stderr)
            liveness = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{metrics}/healthz"],
                                      capture_output=True, text=True)
            self.assertEqual(liveness.stdout.strip(), "ok", "the chart's liveness probe on the metrics port")
            review = subprocess.run(curl + ["-H", "Content-Type: application/json", "--data-binary",
                                            "@" + os.path.join(ROOT, "examples", "admissionreview-typo.json"),
                                            f"{base}/validate?timeout=10s"], capture_output=True, text=True)
            answer = json.loads(review.stdout)["response"]
            self.assertFalse(answer["allowed"])
            self.assertEqual(answer["status"]["code"], 403)
            self.assertIn('spec.serviceName: "appp1" is not in the allowed names [app1 app2] for namespace app1 (did you mean "app1"?)',
                          answer["status"]["message"])
        finally:
            podman("rm", "--force", "--time", "5", name, check=False)


if __name__ == "__main__":
    unittest.main()
