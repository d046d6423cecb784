"""Tests of charts/certgate with Helm's own Go SDK (helm-python-sdk): lint, render and values
schema, for the install commands the README gives; rendered objects checked against the
Kubernetes schemas (kubernetes-validate) and against what Certgate needs; the CRD's schema
checked against the repository's example Pkis.

Run by the Swift suite (certgateTests/ChartTests), or alone:
    .venv-test/bin/python -m unittest discover -s Tests/Chart -v
CERTGATE_BINARY names the certgate binary used to load the rendered policy
(default: .build/debug/certgate).
"""

from __future__ import annotations

import base64
import copy
import glob
import os
import re
import shlex
import subprocess
import tempfile
import unittest

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "charts", "certgate")
KUBERNETES_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
CERTGATE = os.environ.get("CERTGATE_BINARY") or os.path.join(ROOT, ".build", "debug", "certgate")


def make_ca(directory: str) -> str:
    """A CA certificate made by openssl, as a user of the secret mode would have one."""
    path = os.path.join(directory, "ca.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", os.path.join(directory, "ca.key"), "-out", path, "-days", "30", "-subj", "/CN=test CA"],
                   check=True, capture_output=True)
    return path


def merge(target: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target


class InstallCommand:
    """One `helm install` of the README, as Helm would read its flags."""

    def __init__(self, text: str, workdir: str):
        words = shlex.split(text)
        self.text = text
        self.namespace = "default"
        self.values: dict = {}
        self.release = words[2]
        self.chart = words[3]
        index = 4
        while index < len(words):
            flag = words[index]
            name, _, inline = flag.partition("=")
            takes_value = name in ("--namespace", "-n", "--set", "--set-string", "--set-json", "--set-file", "--values",
                                   "-f", "--version", "--timeout")
            value = inline if inline else (words[index + 1] if takes_value else None)
            index += 1 if (inline or not takes_value) else 2
            if name in ("--namespace", "-n"):
                self.namespace = value
            elif name == "--set":
                merge(self.values, helm.parse_set_string(value))
            elif name == "--set-string":
                merge(self.values, helm.parse_set_string_values(value))
            elif name == "--set-json":
                merge(self.values, helm.parse_set_json(value))
            elif name == "--set-file":
                key, _, path = value.partition("=")
                with open(os.path.join(workdir, path)) as file:
                    merge(self.values, helm.parse_set_literal(f"{key}={file.read()}"))
            elif name in ("--values", "-f"):
                with open(os.path.join(workdir, value)) as file:
                    merge(self.values, yaml.safe_load(file) or {})

    @property
    def mode(self) -> str:
        return self.values.get("certificate", {}).get("mode", "self")


def readme_install_commands(workdir: str) -> list[InstallCommand]:
    """The `helm install` commands between the README's chart-install markers."""
    with open(os.path.join(ROOT, "README.md")) as file:
        text = file.read()
    blocks = re.findall(r"<!-- chart-install -->\s*```(?:sh|bash|console)?\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip()
            if command.startswith("helm install") or command.startswith("helm upgrade --install"):
                command = command.replace("helm upgrade --install", "helm install", 1)
                commands.append(InstallCommand(command, workdir))
    return commands


def render(values: dict | None, *, release: str = "certgate", namespace: str = "certgate", upgrade: bool = False,
           chart_path: str = CHART) -> list[dict]:
    with helm.Chart.load(chart_path) as chart:
        manifests = chart.render(values=values, name=release, namespace=namespace, is_install=not upgrade, is_upgrade=upgrade)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document["__template__"] = path
                objects.append(document)
    return objects


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def container(objects: list[dict]) -> dict:
    return find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def argument(args: list[str], flag: str) -> str | None:
    for arg in args:
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


class ChartTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="certgate-chart-")
        cls.ca_file = make_ca(cls.workdir)
        cls.commands = readme_install_commands(cls.workdir)


class ReadmeInstallTests(ChartTestCase):
    def test_the_readme_installs_each_certificate_mode(self):
        self.assertEqual({c.mode for c in self.commands}, {"self", "certManager", "secret"},
                         [c.text for c in self.commands])

    def test_each_install_lints_strictly_and_passes_the_values_schema(self):
        for command in self.commands:
            with self.subTest(command=command.text):
                with helm.Chart.load(CHART) as chart:
                    chart.validate_schema(command.values)
                report = helm.lint(CHART, command.values, strict=True, namespace=command.namespace)
                problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
                self.assertEqual(problems, [])

    def test_each_install_renders_objects_the_cluster_accepts(self):
        for command in self.commands:
            objects = render(command.values, release=command.release, namespace=command.namespace)
            for obj in objects:
                with self.subTest(command=command.text, template=obj["__template__"], kind=obj.get("kind")):
                    self.assertIn("apiVersion", obj)
                    self.assertTrue(obj["metadata"]["name"])
                    clean = {k: v for k, v in obj.items() if k != "__template__"}
                    if obj["apiVersion"].startswith("cert-manager.io/"):
                        continue  # not a Kubernetes schema; checked in CertificateModeTests
                    for version in KUBERNETES_VERSIONS:
                        kubernetes_validate.validate(clean, version, strict=True)

    def test_the_policy_each_install_renders_loads_in_certgate(self):
        self.assertTrue(os.access(CERTGATE, os.X_OK), f"no certgate binary at {CERTGATE} (swift build, or set CERTGATE_BINARY)")
        for command in self.commands:
            with self.subTest(command=command.text):
                policy = find(render(command.values, namespace=command.namespace), "ConfigMap")["data"]["policy.yaml"]
                path = os.path.join(self.workdir, "policy.yaml")
                with open(path, "w") as file:
                    file.write(policy)
                result = subprocess.run([CERTGATE, "validate", "--policy", path, "-f", os.path.join(ROOT, "examples", "pki-app1.yaml")],
                                        capture_output=True, text=True, timeout=60)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class DefaultValuesTests(ChartTestCase):
    def setUp(self):
        self.objects = render(None)

    def test_the_defaults_lint_strictly_and_render_objects_the_cluster_accepts(self):
        report = helm.lint(CHART, None, strict=True, namespace="certgate")
        self.assertEqual([m for m in report["messages"] if m["severity"] >= 2] + report["errors"], [])
        for obj in self.objects:
            with self.subTest(kind=obj["kind"], name=obj["metadata"]["name"]):
                for version in KUBERNETES_VERSIONS:
                    kubernetes_validate.validate({k: v for k, v in obj.items() if k != "__template__"}, version, strict=True)

    def test_the_default_installs_every_piece(self):
        kinds = sorted(o["kind"] for o in self.objects)
        self.assertEqual(kinds, sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ClusterRole", "ClusterRoleBinding",
                                        "Role", "RoleBinding", "Deployment", "PodDisruptionBudget", "Service", "ConfigMap",
                                        "ValidatingWebhookConfiguration", "CustomResourceDefinition"]))

    def test_the_webhook_sees_pki_creates_and_updates_only(self):
        configuration = find(self.objects, "ValidatingWebhookConfiguration")
        [webhook] = configuration["webhooks"]
        self.assertEqual(webhook["name"], "pkis.certgate.dev")
        self.assertEqual(webhook["rules"], [{"apiGroups": ["certgate.dev"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                                             "resources": ["pkis"], "scope": "Namespaced"}])
        self.assertEqual(webhook["admissionReviewVersions"], ["v1"])
        self.assertEqual(webhook["sideEffects"], "None")
        self.assertEqual(webhook["failurePolicy"], "Fail")
        self.assertEqual(webhook["matchPolicy"], "Equivalent")
        self.assertEqual(webhook["timeoutSeconds"], 10)
        self.assertNotIn("caBundle", webhook["clientConfig"], "the self mode's bundle is certgate's to write")

    def test_the_service_and_the_webhook_reach_the_server_port(self):
        webhook = find(self.objects, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]
        service = find(self.objects, "Service")
        self.assertEqual((webhook["name"], webhook["namespace"], webhook["path"]), (service["metadata"]["name"], "certgate", "/validate"))
        [port] = [p for p in service["spec"]["ports"] if p["port"] == webhook["port"]]
        self.assertEqual(port["port"], 443)
        main = container(self.objects)
        [container_port] = [p for p in main["ports"] if p["name"] == port["targetPort"]]
        self.assertEqual(str(container_port["containerPort"]), argument(main["args"], "--port"))
        self.assertEqual(service["spec"]["selector"], find(self.objects, "Deployment")["spec"]["selector"]["matchLabels"])

    def test_rbac_grants_nothing_beyond_what_certgate_uses(self):
        allowed = {
            ("certgate.dev", "pkis"): {"get", "list", "watch"},
            ("certgate.dev", "pkis/status"): {"update", "patch"},
            ("certgate.dev", "pkis/finalizers"): {"update"},
            ("", "secrets"): {"get", "list", "watch", "create", "update", "patch"},
            ("", "events"): {"create", "patch"},
            ("", "pods"): {"get", "list", "watch"},
        }
        granted: dict = {}
        for role in (o for o in self.objects if o["kind"] in ("ClusterRole", "Role")):
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        self.assertNotIn("*", rule["verbs"] + [group, resource])
                        key = (role["kind"], group, resource, tuple(rule.get("resourceNames", [])))
                        granted.setdefault(key, set()).update(rule["verbs"])
        for (kind, group, resource, names), verbs in granted.items():
            with self.subTest(kind=kind, resource=resource, names=names):
                if resource == "validatingwebhookconfigurations":
                    self.assertEqual((kind, names, verbs), ("ClusterRole", ("certgate",), {"get", "patch"}))
                elif resource == "leases":
                    self.assertEqual(kind, "Role", "leases only in the release's namespace")
                    self.assertLessEqual(verbs, {"create"} if not names else {"get", "update"})
                else:
                    self.assertEqual(kind, "ClusterRole")
                    # Exactly what the reconciler sends: fewer verbs fail in a real cluster
                    # (renewals merge-patch Secrets), more grant what nothing uses.
                    self.assertEqual(verbs, allowed[(group, resource)], f"{resource}: {verbs}")
        self.assertNotIn(("ClusterRole", "", "configmaps", ()), granted, "ConfigMaps only with a trust bundle")
        # Owner references with blockOwnerDeletion need it where OwnerReferencesPermissionEnforcement runs.
        self.assertIn("update", granted.get(("ClusterRole", "certgate.dev", "pkis/finalizers", ()), set()))
        self.assertEqual(find(self.objects, "Role")["metadata"]["namespace"], "certgate")
        for binding in (o for o in self.objects if o["kind"].endswith("Binding")):
            self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "certgate", "namespace": "certgate"}])

    def test_a_trust_bundle_adds_its_flag_and_configmap_rbac(self):
        objects = render({"trustBundle": {"configMapName": "certgate-ca"}})
        self.assertEqual(argument(container(objects)["args"], "--trust-bundle-configmap"), "certgate-ca")
        rules = [rule for role in objects if role["kind"] == "ClusterRole" for rule in role["rules"] if "configmaps" in rule["resources"]]
        self.assertEqual([(rule["apiGroups"], sorted(rule["verbs"])) for rule in rules], [([""], ["create", "delete", "get", "list", "patch"])])
        self.assertIsNone(argument(container(self.objects)["args"], "--trust-bundle-configmap"))

    def test_bootstrapped_issuers_are_named_one_flag_each(self):
        objects = render({"reconciler": {"bootstrapCA": True, "bootstrapCAIssuers": ["team", "platform"]}})
        args = container(objects)["args"]
        self.assertIn("--bootstrap-ca", args)
        self.assertEqual([a for a in args if a.startswith("--bootstrap-ca-issuer=")],
                         ["--bootstrap-ca-issuer=team", "--bootstrap-ca-issuer=platform"])
        self.assertFalse([a for a in container(self.objects)["args"] if a.startswith("--bootstrap-ca")], "off by default")

    def test_monitoring_objects_are_off_by_default_and_render_when_enabled(self):
        self.assertFalse([o for o in self.objects if o["kind"] in ("ServiceMonitor", "PrometheusRule")])
        objects = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                                      "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}})
        monitor = find(objects, "ServiceMonitor")
        service = find(objects, "Service")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertEqual(find(objects, "PrometheusRule")["metadata"]["labels"]["release"], "kube-prometheus-stack")
        # It selects the Service by its labels and scrapes its metrics port.
        for key, value in monitor["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(service["metadata"]["labels"].get(key), value)
        self.assertIn(monitor["spec"]["endpoints"][0]["port"], [port["name"] for port in service["spec"]["ports"]])
        self.assertEqual(monitor["spec"]["endpoints"][0]["path"], "/metrics")

    def test_every_alert_names_what_to_do_and_passes_promtool_tests(self):
        objects = render({"metrics": {"prometheusRule": {"enabled": True}}})
        groups = find(objects, "PrometheusRule")["spec"]["groups"]
        alerts = [rule for group in groups for rule in group["rules"]]
        self.assertEqual(sorted(rule["alert"] for rule in alerts),
                         ["CertgateAbsent", "CertgateCertificateExpiringSoon", "CertgateCertificateNotRenewed",
                          "CertgateIssuerExpiringSoon", "CertgatePkiNotReady", "CertgateWebhookErrors"])
        for rule in alerts:
            self.assertTrue(rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"])
            self.assertIn("kubectl", rule["annotations"]["description"], f"{rule['alert']} says what to run")
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "rules.yaml"), "w") as rules:
                yaml.safe_dump({"groups": groups}, rules)
            with open(os.path.join(ROOT, "Tests", "Chart", "alerts.test.yaml")) as source, \
                    open(os.path.join(directory, "alerts.test.yaml"), "w") as copy_:
                copy_.write(source.read())
            for command in (["check", "rules", "rules.yaml"], ["test", "rules", "alerts.test.yaml"]):
                result = subprocess.run(["promtool", *command], cwd=directory, capture_output=True, text=True)
                self.assertEqual(result.returncode, 0, f"promtool {' '.join(command)}: {result.stdout}{result.stderr}")

    def test_the_pod_runs_locked_down(self):
        spec = find(self.objects, "Deployment")["spec"]["template"]["spec"]
        self.assertEqual(spec["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertTrue(spec["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(spec["securityContext"]["runAsUser"], 0)
        context = container(self.objects)["securityContext"]
        self.assertEqual(context["allowPrivilegeEscalation"], False)
        self.assertEqual(context["readOnlyRootFilesystem"], True)
        self.assertEqual(context["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(spec["serviceAccountName"], "certgate")

    def test_probes_replicas_leader_election_and_grace(self):
        deployment = find(self.objects, "Deployment")
        spec = deployment["spec"]["template"]["spec"]
        main = container(self.objects)
        self.assertEqual(deployment["spec"]["replicas"], 2)
        self.assertEqual(argument(main["args"], "--leader-elect"), "true")
        lease = argument(main["args"], "--leader-elect-resource-name")
        self.assertEqual(lease, "certgate-leader")
        role = find(self.objects, "Role", "certgate-leader-election")
        named = [rule for rule in role["rules"] if rule.get("resourceNames")]
        self.assertEqual([rule["resourceNames"] for rule in named], [[lease]], "the Role lets it update exactly its Lease")
        self.assertEqual(main["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(main["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "webhook", "scheme": "HTTPS"})
        port_names = {p["name"] for p in main["ports"]}
        self.assertIn(main["livenessProbe"]["httpGet"]["port"], port_names)
        self.assertEqual(argument(main["args"], "--metrics-address"), "0.0.0.0:9090", "probes reach the metrics port from the kubelet")
        grace = argument(main["args"], "--shutdown-grace-period")
        self.assertEqual(spec["terminationGracePeriodSeconds"], int(grace.rstrip("s")) + 5)
        self.assertTrue(main["resources"]["requests"] and main["resources"]["limits"]["memory"])
        self.assertEqual({c["topologyKey"] for c in spec["topologySpreadConstraints"]},
                         {"kubernetes.io/hostname", "topology.kubernetes.io/zone"})
        self.assertEqual(find(self.objects, "PodDisruptionBudget")["spec"]["minAvailable"], 1)
        self.assertEqual({e["name"] for e in main["env"]}, {"POD_NAMESPACE"})

    def test_two_releases_in_one_namespace_elect_their_leaders_apart(self):
        leases = []
        for release in ("certgate", "certgate-canary"):
            objects = render(None, release=release)
            lease = argument(container(objects)["args"], "--leader-elect-resource-name")
            role = find(objects, "Role", f"{release}-leader-election")
            self.assertIn([lease], [rule.get("resourceNames") for rule in role["rules"]])
            leases.append(lease)
        self.assertEqual(leases, ["certgate-leader", "certgate-canary-leader"])

    def test_the_policy_is_mounted_where_certgate_reads_it(self):
        main = container(self.objects)
        spec = find(self.objects, "Deployment")["spec"]["template"]["spec"]
        [mount] = [m for m in main["volumeMounts"] if m["name"] == "policy"]
        self.assertEqual(argument(main["args"], "--policy"), mount["mountPath"] + "/policy.yaml")
        [volume] = [v for v in spec["volumes"] if v["name"] == "policy"]
        configmap = find(self.objects, "ConfigMap")
        self.assertEqual(volume["configMap"]["name"], configmap["metadata"]["name"])
        policy = yaml.safe_load(configmap["data"]["policy.yaml"])
        self.assertEqual(policy["issuers"]["default"], {"secretName": "certgate-ca", "secretNamespace": "certgate"})

    def test_a_single_replica_gets_no_budget_that_would_block_drains(self):
        self.assertFalse([o for o in render({"replicaCount": 1}) if o["kind"] == "PodDisruptionBudget"])

    def test_selectors_from_values_reach_the_webhook(self):
        objects = render({"webhook": {"namespaceSelector": {"matchLabels": {"certgate.dev/enabled": "true"}},
                                      "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
                                      "failurePolicy": "Ignore", "timeoutSeconds": 5}})
        webhook = find(objects, "ValidatingWebhookConfiguration")["webhooks"][0]
        self.assertEqual(webhook["namespaceSelector"], {"matchLabels": {"certgate.dev/enabled": "true"}})
        self.assertEqual(webhook["objectSelector"], {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]})
        self.assertEqual((webhook["failurePolicy"], webhook["timeoutSeconds"]), ("Ignore", 5))


class CertificateModeTests(ChartTestCase):
    def test_self_mode_keeps_its_own_secret_and_patches_its_own_webhook(self):
        objects = render({"certificate": {"mode": "self"}})
        main = container(objects)
        self.assertEqual(argument(main["args"], "--tls-secret"), "certgate-webhook-tls")
        self.assertEqual(argument(main["args"], "--tls-hosts"), "certgate.certgate.svc,certgate.certgate.svc.cluster.local")
        self.assertEqual(argument(main["args"], "--webhook-configuration"), find(objects, "ValidatingWebhookConfiguration")["metadata"]["name"])
        self.assertIsNone(argument(main["args"], "--tls-cert-file"))
        self.assertEqual([m["name"] for m in main["volumeMounts"]], ["policy"], "self mode mounts nothing else")
        self.assertFalse([o for o in objects if o["apiVersion"].startswith("cert-manager.io/")])

    def test_cert_manager_mode_issues_a_certificate_and_injects_its_ca(self):
        objects = render({"certificate": {"mode": "certManager"}})
        certificate = find(objects, "Certificate")
        self.assertEqual(certificate["apiVersion"], "cert-manager.io/v1")
        self.assertEqual(certificate["spec"]["dnsNames"], ["certgate.certgate.svc", "certgate.certgate.svc.cluster.local"])
        self.assertEqual(certificate["spec"]["issuerRef"], {"name": "certgate-selfsigned", "kind": "Issuer", "group": "cert-manager.io"})
        self.assertEqual(find(objects, "Issuer")["spec"], {"selfSigned": {}})
        configuration = find(objects, "ValidatingWebhookConfiguration")
        self.assertEqual(configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                         f"certgate/{certificate['metadata']['name']}")
        self.assert_serves_mounted_secret(objects, certificate["spec"]["secretName"])
        given = render({"certificate": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}})
        self.assertEqual(find(given, "Certificate")["spec"]["issuerRef"], {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        self.assertFalse([o for o in given if o["kind"] == "Issuer"])

    def test_secret_mode_mounts_the_given_secret_and_bundles_the_given_ca(self):
        with open(self.ca_file) as file:
            pem = file.read()
        objects = render({"certificate": {"mode": "secret", "secret": {"name": "webhook-tls", "caBundle": pem}}})
        webhook = find(objects, "ValidatingWebhookConfiguration")["webhooks"][0]
        self.assertEqual(base64.b64decode(webhook["clientConfig"]["caBundle"]).decode(), pem)
        self.assert_serves_mounted_secret(objects, "webhook-tls")
        self.assertFalse([o for o in objects if o["kind"] == "ClusterRole" and "webhook-configuration" in o["metadata"]["name"]],
                         "no rights on the webhook configuration when certgate does not write its bundle")

    def assert_serves_mounted_secret(self, objects, secret_name):
        main = container(objects)
        spec = find(objects, "Deployment")["spec"]["template"]["spec"]
        [volume] = [v for v in spec["volumes"] if v["name"] == "tls"]
        self.assertEqual(volume["secret"]["secretName"], secret_name)
        [mount] = [m for m in main["volumeMounts"] if m["name"] == "tls"]
        self.assertEqual(argument(main["args"], "--tls-cert-file"), mount["mountPath"] + "/tls.crt")
        self.assertEqual(argument(main["args"], "--tls-key-file"), mount["mountPath"] + "/tls.key")
        self.assertIsNone(argument(main["args"], "--tls-secret"))


class ValuesSchemaTests(ChartTestCase):
    def test_wrong_values_are_rejected_with_the_key_named(self):
        wrong = {
            "certificate.mode": {"certificate": {"mode": "selfSigned"}},
            "failurePolicy": {"webhook": {"failurePolicy": "fail"}},
            "timeoutSeconds": {"webhook": {"timeoutSeconds": 60}},
            "replicaCount": {"replicaCount": 0},
            "replicas": {"replicas": 3},
            "caBundle": {"certificate": {"mode": "secret", "secret": {"name": "webhook-tls"}}},
            "leaseDuration": {"leaderElection": {"leaseDuration": "15 seconds"}},
            "algorithms": {"policy": {"privateKeys": {"algorithms": ["DSA"]}}},
        }
        for key, values in wrong.items():
            with self.subTest(key=key):
                with helm.Chart.load(CHART) as chart:
                    with self.assertRaises(helm.HelmError) as raised:
                        chart.validate_schema(values)
                self.assertIn(key.split(".")[-1], str(raised.exception))
                report = helm.lint(CHART, values, strict=True)
                self.assertTrue(report["errors"] or [m for m in report["messages"] if m["severity"] >= 3], report)


CRD_FILE = os.path.join(CHART, "files", "pkis.certgate.dev.yaml")


def crd_file() -> dict:
    with open(CRD_FILE) as file:
        return yaml.safe_load(file)


class CustomResourceDefinitionReleaseTests(unittest.TestCase):
    """The CRD is rendered with the release from the one file kubectl and the tests read, so
    `helm upgrade` carries its schema changes (a CRD under crds/ is installed once, never upgraded)."""

    def rendered_crd(self, values: dict | None, *, upgrade: bool, chart_path: str = CHART) -> dict | None:
        crds = [o for o in render(values, upgrade=upgrade, chart_path=chart_path) if o["kind"] == "CustomResourceDefinition"]
        self.assertLessEqual(len(crds), 1)
        return crds[0] if crds else None

    def test_no_crd_is_left_where_helm_would_never_upgrade_it(self):
        with helm.Chart.load(CHART) as chart:
            self.assertEqual(chart.crds, [])

    def test_install_and_upgrade_render_the_file_kubectl_applies(self):
        expected = crd_file()
        for upgrade in (False, True):
            with self.subTest(upgrade=upgrade):
                crd = self.rendered_crd(None, upgrade=upgrade)
                self.assertIsNotNone(crd, "no CustomResourceDefinition rendered")
                self.assertEqual(crd["__template__"], "certgate/templates/crd.yaml")
                self.assertEqual({k: v for k, v in crd.items() if k not in ("metadata", "__template__")},
                                 {k: v for k, v in expected.items() if k != "metadata"})
                self.assertEqual(crd["metadata"]["name"], expected["metadata"]["name"])
                labels = crd["metadata"]["labels"]
                self.assertEqual(labels["app.kubernetes.io/managed-by"], "Helm")
                self.assertEqual(labels["app.kubernetes.io/instance"], "certgate")
                self.assertLessEqual(expected["metadata"]["labels"].items(), labels.items())
                self.assertEqual(crd["metadata"]["annotations"], {"helm.sh/resource-policy": "keep"})
                for version in KUBERNETES_VERSIONS:
                    kubernetes_validate.validate({k: v for k, v in crd.items() if k != "__template__"}, version, strict=True)

    def test_crds_keep_false_lets_uninstall_delete_it(self):
        crd = self.rendered_crd({"crds": {"keep": False}}, upgrade=True)
        self.assertIsNotNone(crd)
        self.assertNotIn("helm.sh/resource-policy", crd["metadata"].get("annotations", {}))

    def test_crds_enabled_false_leaves_it_to_the_user(self):
        self.assertIsNone(self.rendered_crd({"crds": {"enabled": False}}, upgrade=True))
        self.assertIsNone(self.rendered_crd({"crds": {"enabled": False, "keep": True}}, upgrade=False))
        report = helm.lint(CHART, {"crds": {"enabled": False}}, strict=True, namespace="certgate")
        self.assertEqual([m for m in report["messages"] if m["severity"] >= 2] + report["errors"], [])

    def test_an_upgrade_reusing_values_from_before_the_crds_key_still_carries_the_crd(self):
        # `helm upgrade --reuse-values` renders with the old release's values, which have no
        # crds key: the chart's values.yaml stripped of it stands for them.
        with tempfile.TemporaryDirectory() as directory:
            old = os.path.join(directory, "certgate")
            subprocess.run(["cp", "-r", CHART, old], check=True)
            values_path = os.path.join(old, "values.yaml")
            with open(values_path) as file:
                values = yaml.safe_load(file)
            del values["crds"]
            with open(values_path, "w") as file:
                yaml.safe_dump(values, file)
            crd = self.rendered_crd(None, upgrade=True, chart_path=old)
        self.assertIsNotNone(crd, "an upgrade from old values dropped the CRD")
        self.assertEqual(crd["metadata"]["annotations"], {"helm.sh/resource-policy": "keep"})

    def test_the_values_schema_refuses_a_misspelt_setting(self):
        for values in ({"crds": {"enabled": "yes"}}, {"crds": {"kep": True}}):
            with self.subTest(values=values):
                with helm.Chart.load(CHART) as chart:
                    with self.assertRaises(helm.HelmError):
                        chart.validate_schema(values)


class CustomResourceDefinitionTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crd = crd_file()
        [cls.version] = cls.crd["spec"]["versions"]
        cls.schema = cls.version["schema"]["openAPIV3Schema"]

    def test_it_is_a_valid_structural_crd_with_status_columns_and_short_name(self):
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(self.crd, version, strict=True)
        self.assertEqual(self.crd["metadata"]["name"], "pkis.certgate.dev")
        self.assertEqual(self.crd["spec"]["names"]["shortNames"], ["pki"])
        self.assertEqual(self.version["subresources"], {"status": {}})
        columns = self.version["additionalPrinterColumns"]
        self.assertEqual([c["name"] for c in columns], ["Ready", "Secret", "Expires", "Age", "Reason", "Status"])
        # The Ready reason and message only with -o wide (priority 1), as cert-manager shows them.
        self.assertEqual([c.get("priority", 0) for c in columns], [0, 0, 0, 0, 1, 1])
        self.assertEqual(columns[5]["jsonPath"], '.status.conditions[?(@.type=="Ready")].message')

        def walk(node, path):
            if path.startswith("metadata"):
                return
            self.assertIn("type", node, f"{path} has no type (a structural schema needs one)")
            self.assertTrue(node.get("description"), f"{path or 'the root'} has no description for kubectl explain")
            for name, child in node.get("properties", {}).items():
                walk(child, f"{path}.{name}" if path else name)
            items = node.get("items")
            if items and items.get("type") == "object":
                walk(items, path + "[]")
            elif items:
                self.assertIn("type", items, f"{path}[] has no type")

        walk(self.schema, "")

    def validate_pki(self, pki: dict):
        jsonschema.validate({k: v for k, v in pki.items() if k != "metadata"}, self.schema)

    def test_the_repositorys_example_pkis_are_accepted(self):
        paths = glob.glob(os.path.join(ROOT, "examples", "pki-*.yaml")) + glob.glob(
            os.path.join(ROOT, "Tests", "Fixtures", "apiserver-1.28", "manifests", "pki-*.yaml"))
        self.assertGreaterEqual(len(paths), 4)
        for path in paths:
            with self.subTest(path=os.path.relpath(path, ROOT)):
                with open(path) as file:
                    documents = list(yaml.safe_load_all(file))
                for document in documents:
                    if document and document.get("kind") == "Pki":
                        self.validate_pki(document)

    def test_malformed_pkis_are_rejected_at_the_field(self):
        with open(os.path.join(ROOT, "examples", "pki-app1.yaml")) as file:
            good = yaml.safe_load(file)
        cases = {
            "serviceName": lambda spec: spec.pop("serviceName"),
            "algorithm": lambda spec: spec["privateKey"].update(algorithm="ecdsa"),
            "size": lambda spec: spec["privateKey"].update(size="256"),
            "duration": lambda spec: spec.update(duration="90 days"),
            "usages": lambda spec: spec.update(usages=["server-auth"]),
            "dnsNames": lambda spec: spec.update(dnsNames="app1.app1.svc"),
            "commonName": lambda spec: spec.update(commonName="x" * 65),
        }
        for field, damage in cases.items():
            with self.subTest(field=field):
                pki = copy.deepcopy(good)
                damage(pki["spec"])
                with self.assertRaises(jsonschema.ValidationError) as raised:
                    self.validate_pki(pki)
                where = list(raised.exception.absolute_path) + [raised.exception.message]
                self.assertIn(field, " ".join(map(str, where)))


if __name__ == "__main__":
    unittest.main()
