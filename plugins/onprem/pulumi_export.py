"""`mlplat export --format pulumi -o DIR`: the onprem objects as a Pulumi Python program (pulumi-kubernetes).

The stack is lowered as `mlplat plan` lowers it (without asking the cluster: no discovery) and every `onprem.*`
resource with a `manifest` becomes the same Kubernetes object in Pulumi's terms: a typed pulumi-kubernetes class for
built-in kinds, `apiextensions.CustomResource` for the rest (HTTPRoute, ServiceMonitor, InferenceService, Kueue),
`depends_on` mirroring mlplat's graph, all through one `kubernetes.Provider` per onprem target (pulumi config
`kubeconfig`, `context`; server-side apply). Models (`onprem.model_artifact`, an OCI push) have no Pulumi
equivalent: the program lists them with the commands that push them, and reads the values other objects take from
them (their URI, the blob URL a pod downloads) from pulumi config, defaulting to where the push puts them.

Writes `__main__.py`, `Pulumi.yaml`, `requirements.txt`, `README.md` and `automation.py` (Automation API). This
module imports no Pulumi SDK: it writes text.
"""

from __future__ import annotations

import json
import pprint
import re
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provisioner.errors import MlplatError
from provisioner.export import Exporter, Files
from provisioner.graph import Ref, Resource

if TYPE_CHECKING:
    from provisioner.api import Stack

ARTIFACT = "onprem.model_artifact"
#: (apiVersion, kind) → pulumi-kubernetes class (under `kubernetes.`); any other kind is a CustomResource
BUILT_IN = {
    ("v1", "Namespace"): "core.v1.Namespace", ("v1", "PersistentVolume"): "core.v1.PersistentVolume",
    ("v1", "PersistentVolumeClaim"): "core.v1.PersistentVolumeClaim", ("v1", "Service"): "core.v1.Service",
    ("v1", "ResourceQuota"): "core.v1.ResourceQuota", ("v1", "ConfigMap"): "core.v1.ConfigMap",
    ("v1", "Secret"): "core.v1.Secret", ("v1", "ServiceAccount"): "core.v1.ServiceAccount",
    ("v1", "LimitRange"): "core.v1.LimitRange",
    ("apps/v1", "Deployment"): "apps.v1.Deployment", ("apps/v1", "StatefulSet"): "apps.v1.StatefulSet",
    ("apps/v1", "DaemonSet"): "apps.v1.DaemonSet", ("batch/v1", "Job"): "batch.v1.Job",
    ("batch/v1", "CronJob"): "batch.v1.CronJob",
    ("scheduling.k8s.io/v1", "PriorityClass"): "scheduling.v1.PriorityClass",
    ("networking.k8s.io/v1", "Ingress"): "networking.v1.Ingress",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networking.v1.NetworkPolicy",
    ("policy/v1", "PodDisruptionBudget"): "policy.v1.PodDisruptionBudget",
}
#: mlplat outputs of a Kubernetes object that are its metadata (the rest are read from its status)
METADATA_OUTPUTS = {"name", "namespace", "uid"}
#: optional APIs the lowering depends on (`OnpremTarget.discover`)
OPTIONAL_APIS = ("kueue", "gateway_api", "prometheus_operator", "kserve")
INSTALL_URL = "https://www.pulumi.com/docs/install/"
WIDTH = 118


class _Code:
    """A Python expression inside a rendered literal (pprint writes its repr verbatim)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _ident(text: str) -> str:
    name = re.sub(r"\W+", "_", text).strip("_").lower() or "r"
    return f"r_{name}" if name[0].isdigit() else name


def _config_key(*parts: str) -> str:
    return "-".join(s for s in (re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts) if s)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _literal(value: Any, column: int, depth: int = 0) -> str:
    """`value` as Python source, continuation lines indented to `column` (in a block indented `depth` more)."""
    text = pprint.pformat(value, width=max(40, WIDTH - column - depth), sort_dicts=False)
    return textwrap.indent(text, " " * column)[column:]


def _comment(text: str, indent: str = "", depth: int = 0) -> list[str]:
    """`text` as comment lines (in a block indented `depth` more)."""
    wrapped = textwrap.wrap(text, WIDTH - len(indent) - depth - 2, break_on_hyphens=False, break_long_words=False)
    return [f"{indent}# {line}".rstrip() for line in wrapped] or [f"{indent}#"]


@dataclass
class _External:
    """A value the program does not make: an output of a model artifact or of a resource on another target."""

    address: str
    output: str
    key: str
    default: str
    why: str


@dataclass
class _Program:
    stack: Stack
    resources: dict[str, Resource]
    outputs: dict[str, Any]
    onprem_targets: list[str] = field(default_factory=list)
    declared: dict[str, Resource] = field(default_factory=dict)  # address → resource, declaration order
    variables: dict[str, str] = field(default_factory=dict)  # address → Python variable
    artifacts: list[Resource] = field(default_factory=list)
    external: dict[tuple[str, str], _External] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)  # declared only once the models are pushed
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    canary_gate: bool = False
    onprem_components: set[str] = field(default_factory=set)
    _exporting: bool = False  # rendering the stack's outputs (not objects' inputs)

    # analysis ---------------------------------------------------------------------------------------------------

    def classify(self) -> None:
        types = {name: t.name for name, t in self.stack.targets.items()}
        self.onprem_targets = sorted({r.target for r in self.resources.values()
                                      if types.get(r.target) == "onprem"})
        onprem_components: set[str] = set()
        for _loc, component in self.stack.components():
            target = self.stack.platform.target_of(component)
            if types.get(target) == "onprem":
                onprem_components.add(component.name)
            else:
                self.left_out.append(f"{component.name} (target {target}, {types.get(target, '?')})")
        self.onprem_components = onprem_components
        candidates = []
        for r in self.resources.values():
            if r.kind == ARTIFACT and types.get(r.target) == "onprem":
                self.artifacts.append(r)
            elif r.kind.startswith("onprem.") and isinstance(r.inputs.get("manifest"), dict):
                candidates.append(r)
            elif types.get(r.target) == "onprem":
                self.left_out.append(f"resource {r.address} ({r.kind}: no Kubernetes manifest)")
        for r in self._order(candidates):
            self.declared[r.address] = r
        used: set[str] = set()
        for address in self.declared:
            variable = _ident(address)
            while variable in used or variable in {"pulumi", "k8s", "config", "providers", "EXTERNAL"}:
                variable += "_"
            used.add(variable)
            self.variables[address] = variable

    def _order(self, candidates: list[Resource]) -> list[Resource]:
        """Dependencies first (stable), then the ones needing a pushed model after the rest."""
        wanted = {r.address for r in candidates}
        done: set[str] = set()
        ordered: list[Resource] = []
        pending = list(candidates)
        while pending:
            progressed = False
            for r in list(pending):
                if all(d in done for d in self.after(r) if d in wanted):
                    ordered.append(r)
                    done.add(r.address)
                    pending.remove(r)
                    progressed = True
            if not progressed:  # a cycle mlplat's own plan refuses; keep the rest in lowering order
                ordered += pending
                break
        needs = {a.address for a in self.artifacts}
        for r in ordered:  # what (transitively) needs a pushed model
            if any(e in needs or e in self.gated for e in r.edges):
                self.gated.add(r.address)
        return [r for r in ordered if r.address not in self.gated] + [r for r in ordered if r.address in self.gated]

    def after(self, r: Resource) -> list[str]:
        """Declared resources `r` waits for: its edges, an undeclared resource replaced by what it waits for."""
        found: list[str] = []
        seen: set[str] = set()
        stack = sorted(r.edges)
        while stack:
            address = stack.pop(0)
            if address in seen:
                continue
            seen.add(address)
            other = self.resources.get(address)
            if other is None:
                continue
            if other.kind.startswith("onprem.") and isinstance(other.inputs.get("manifest"), dict):
                found.append(address)
            else:  # a model artifact (or another target's resource): wait for what it waits for
                stack += sorted(other.edges)
        return sorted(set(found))

    # rendering --------------------------------------------------------------------------------------------------

    def value(self, value: Any, refs: set[str]) -> Any:
        """`value` with each Ref replaced by the expression that reads it."""
        if isinstance(value, Ref):
            return _Code(self.ref(value, refs))
        if isinstance(value, dict):
            return {k: self.value(v, refs) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, refs) for v in value]
        return value

    def ref(self, ref: Ref, refs: set[str]) -> str:
        target = self.declared.get(ref.address)
        if target is not None:  # another Kubernetes object this program declares: its output
            manifest = target.inputs["manifest"]
            typed = (manifest["apiVersion"], manifest["kind"]) in BUILT_IN
            if ref.output in METADATA_OUTPUTS or typed:  # a CustomResource exposes no status in Pulumi
                refs.add(ref.address)
                known = manifest.get("metadata", {}).get(ref.output) if ref.output in METADATA_OUTPUTS else None
                section = "metadata" if ref.output in METADATA_OUTPUTS else "status"
                return f"_ref({self.variables[ref.address]}, {section!r}, {ref.output!r}, {known!r})"
        key = (ref.address, ref.output)
        if key not in self.external:
            self.external[key] = self._external(ref)
        return f"EXTERNAL[{ref.address!r}][{ref.output!r}]"

    def _external(self, ref: Ref) -> _External:
        source = self.resources.get(ref.address)
        key = _config_key(ref.address, ref.output)
        placeholder = f"<set with: pulumi config set {key} VALUE>"
        if source is not None and source.kind == ARTIFACT:
            i = source.inputs
            # as the provider (registry.py) reports them; the manifest's digest is known only after the push
            defaults = {"uri": f"oci://{i['host']}/{i['repository']}:{i['tag']}",
                        "blob_url": f"http://{i['host']}/v2/{i['repository']}/blobs/sha256:{i['sha256']}",
                        "sha256": i["sha256"]}
            notes = {"uri": "; mlplat records it pinned, …:tag@<manifest digest> (known once pushed): set that to pin "
                            "it", "blob_url": " (content-addressed: the file's sha256)"}
            if ref.output in defaults:
                return _External(ref.address, ref.output, key, defaults[ref.output],
                                 f"{ref.output} of model {i['repository']}:{i['tag']} once pushed (see MODELS above)"
                                 + notes.get(ref.output, ""))
            why = f"output {ref.output!r} of model artifact {ref.address}: set it once the model is pushed"
        elif ref.address in self.declared:
            manifest = self.declared[ref.address].inputs["manifest"]
            meta = manifest.get("metadata", {})
            where = f"-n {meta['namespace']} " if meta.get("namespace") else ""
            why = f"status.{ref.output} of {manifest['kind']} {meta.get('name')} ({ref.address}; Pulumi's " \
                  "CustomResource exposes no status): once it is up, kubectl get " \
                  f"{manifest['kind'].lower()} {where}{meta.get('name')} -o jsonpath='{{.status.{ref.output}}}'"
            if not self._exporting:
                self.notes.append(f"pulumi config {key}: {why}")
            return _External(ref.address, ref.output, key, placeholder, why)
        elif source is not None:
            why = f"output {ref.output!r} of {ref.address} ({source.kind} on target {source.target}, which this " \
                  "program does not declare): set it from `mlplat output`"
        else:
            why = f"output {ref.output!r} of {ref.address} (not in the stack)"
        if not self._exporting:
            self.notes.append(f"pulumi config {key} must be set before `pulumi up`: {why}")
        return _External(ref.address, ref.output, key, placeholder, why)

    def resource_block(self, r: Resource, depth: int = 0) -> tuple[list[str], set[str]]:
        manifest = r.inputs["manifest"]
        api, kind = manifest["apiVersion"], manifest["kind"]
        variable = self.variables[r.address]
        refs: set[str] = set()
        lines = [f"# {r.address} ({r.kind}{', on target ' + r.target if len(self.onprem_targets) > 1 else ''})"]
        cls = BUILT_IN.get((api, kind))
        args: list[tuple[str, Any]] = []
        extra_fields = []
        if cls is not None:
            call = f"k8s.{cls}("
            for k, v in manifest.items():
                if k not in ("apiVersion", "kind"):
                    args.append((_snake(k), self.value(v, refs)))
        else:
            call = "k8s.apiextensions.CustomResource("
            args += [("api_version", api), ("kind", kind)]
            for k, v in manifest.items():
                if k in ("metadata", "spec"):
                    args.append((k, self.value(v, refs)))
                elif k not in ("apiVersion", "kind"):
                    extra_fields.append(k)
            if extra_fields:  # CustomResource takes metadata and spec only: say so, never drop silently
                lines += _comment(f"NOTE: top-level field(s) {', '.join(extra_fields)} of this {kind} are not "
                                  "expressible with CustomResource and are not declared here: "
                                  + json.dumps({k: manifest[k] for k in extra_fields}, default=str), depth=depth)
                self.notes.append(f"{r.address}: top-level field(s) {', '.join(extra_fields)} of {kind} left out "
                                  "(CustomResource takes metadata and spec)")
        production = r.inputs.get("production")
        spec = manifest.get("spec")
        canary = kind == "InferenceService" and isinstance(production, dict) and isinstance(spec, dict) \
            and spec.get("predictor") != production
        if canary:
            self.canary_gate = True
            lines += _comment("KServe rolls a canary out against the running revision: on a new InferenceService, "
                              "first `pulumi config set kserve-canary false` and `pulumi up` (production only), "
                              "then `pulumi config rm kserve-canary` and `pulumi up` again (the canary).", depth=depth)
            prod = self.value({**spec, "predictor": production}, refs)
            for suffix, value in (("canary", dict(args)["spec"]), ("production", prod)):
                prefix = f"{variable}_{suffix} = "
                lines.append(f"{prefix}{_literal(value, len(prefix), depth)}")
            args = [(k, _Code(f"{variable}_canary if KSERVE_CANARY else {variable}_production") if k == "spec"
                     else v) for k, v in args]
        lines.append(f"{variable} = {call}")
        lines.append(f"    {r.address!r},")
        for name, v in args:
            prefix = f"    {name}="
            lines.append(f"{prefix}{_literal(v, len(prefix), depth)},")
        after = [self.variables[a] for a in self.after(r)]
        opts = f"    opts=pulumi.ResourceOptions(provider=providers[{r.target!r}]"
        if not after:
            lines.append(f"{opts}),")
        elif len(f"{opts}, depends_on=[{', '.join(after)}]),") <= WIDTH - depth:
            lines.append(f"{opts}, depends_on=[{', '.join(after)}]),")
        else:
            lines.append(f"{opts}, depends_on=[")
            lines += textwrap.wrap(", ".join(after) + "]),", WIDTH - depth, initial_indent=" " * 8,
                                   subsequent_indent=" " * 8, break_on_hyphens=False)
        lines.append(")")
        waits = sorted(e for e in r.edges if e not in self.declared)
        if waits:
            lines[1:1] = _comment("waits for " + ", ".join(waits) + " (not Pulumi resources: their dependencies "
                                  "stand in)", depth=depth)
        return lines, refs

    def main_py(self) -> str:
        body: list[str] = []
        gated_body: list[str] = []
        for address, r in self.declared.items():
            block, _refs = self.resource_block(r, 4 if address in self.gated else 0)
            (gated_body if address in self.gated else body).extend(["\n".join(block), ""])
        exports: list[str] = []
        gated_exports: list[str] = []
        for key, value in sorted(self.outputs.items()):
            component = key.split(".", 1)[0]
            scoped = key.startswith("_stack.") and key.split(".")[1] in self.onprem_targets
            if component not in self.onprem_components and not scoped:
                continue
            refs: set[str] = set()
            self._exporting = True
            rendered = self.value(value, refs)
            self._exporting = False
            depth = 4 if refs & self.gated else 0
            line = f"pulumi.export({key!r}, {_literal(rendered, 16 + len(repr(key)), depth)})"
            (gated_exports if depth else exports).append(line)
        lines = self.header()
        lines += [
            "import pulumi",
            "import pulumi_kubernetes as k8s",
            "",
            "config = pulumi.Config()",
        ]
        if self.artifacts:
            lines += ["#: `pulumi config set registry-only true`: only what the models need (push them, then unset it)",
                      'REGISTRY_ONLY = config.get_bool("registry-only") or False']
        if self.canary_gate:
            lines += ["#: `pulumi config set kserve-canary false`: InferenceServices with their production predictor",
                      'KSERVE_CANARY = config.get_bool("kserve-canary") is not False']
        lines += ["", "", *self.helpers(), "", *self.provider_lines(), "", *self.external_lines()]
        lines += body
        if gated_body:
            lines += _comment("These need a model in the registry (their pods download it): declared once the models "
                              "are pushed (registry-only unset).")
            lines.append("if not REGISTRY_ONLY:")
            lines += [textwrap.indent(block, "    ") for block in gated_body]
            while lines and not lines[-1]:
                lines.pop()
            lines.append("")
        lines += ["", "# The stack's outputs (of its onprem components), as `mlplat output` names them", *exports]
        if gated_exports:
            lines.append("if not REGISTRY_ONLY:")
            lines += [textwrap.indent(line, "    ") for line in gated_exports]
        return "\n".join(lines).rstrip() + "\n"

    def header(self) -> list[str]:
        path = self.stack.loaded.path
        lines = [f'"""Pulumi program of mlplat stack {self.stack.name!r} (its onprem objects), written by',
                 f"`mlplat export --format pulumi -f {path.name} -o DIR`. Edit the stack file and export again rather "
                 "than editing this.", '"""', ""]
        lines += _comment(f"Stack file: {path}")
        lines += _comment(f"Declares {len(self.declared)} Kubernetes objects on target(s) "
                          f"{', '.join(self.onprem_targets) or '(none)'}, through a pulumi-kubernetes Provider with "
                          "server-side apply (pulumi config: kubeconfig, context).")
        for name in self.onprem_targets:
            found = self.stack.targets[name].discovered
            if not found:
                lines += _comment(f"Target {name} was lowered without asking the cluster (as `mlplat validate` "
                                  "does): Kueue, the Prometheus operator and KServe count as not installed, so no "
                                  "Kueue queues, ServiceMonitors or InferenceServices are declared for it.")
            else:
                apis = ", ".join(f"{k}={'yes' if found.get(k) else 'no'}" for k in OPTIONAL_APIS)
                lines += _comment(f"Target {name} was lowered with what its cluster serves: {apis}.")
        if self.left_out:
            lines.append("#")
            lines += _comment("LEFT OUT (not on an onprem target, or nothing Kubernetes can hold): "
                              + "; ".join(self.left_out))
        if self.artifacts:
            lines.append("#")
            lines += self.models_comment()
        lines.append("")
        return lines

    def models_comment(self) -> list[str]:
        lines = ["# MODELS: OCI artifacts mlplat pushes into the cluster's registry (onprem.model_artifact). Pulumi",
                 "# has no resource for a push: push them yourself once the registry runs (`pulumi config set",
                 "# registry-only true` then `pulumi up` declares only what they need), then unset registry-only and",
                 "# `pulumi up` again. Push each with oras (https://oras.land), the registry's Service",
                 "# port-forwarded, as mlplat lays them out (one layer, titled with the file name):"]
        namespaces = sorted({a.inputs["namespace"] for a in self.artifacts})
        for r in self.artifacts:
            i = r.inputs
            lines += [f"#   {r.address}: {i['source']} ({i['framework']})", f"#     sha256 {i['sha256']}"]
        for ns in namespaces:
            services = sorted({(a.inputs["service"], a.inputs["port"]) for a in self.artifacts
                               if a.inputs["namespace"] == ns})
            for service, port in services:
                lines.append(f"#   kubectl -n {ns} port-forward svc/{service} {port}:{port} &")
        from mlplat_plugins.onprem.registry import ARTIFACT_TYPE, LAYER_TYPE_PREFIX

        for r in self.artifacts:
            i = r.inputs
            folder = i["source"].rsplit("/", 1)[0] if "/" in i["source"] else "."
            lines.append(f"#   (cd {folder} && oras push --plain-http --artifact-type {ARTIFACT_TYPE} \\")
            lines.append(f"#      localhost:{i['port']}/{i['repository']}:{i['tag']} "
                         f"{i['file']}:{LAYER_TYPE_PREFIX}{i['framework']})")
        lines += [f"# (`mlplat apply -f {self.stack.loaded.path}` pushes them too, but makes the whole stack",
                  "# under mlplat's state: use it instead of this program, not beside it.)",
                  "# What other objects take from them (URI, blob URL) is in EXTERNAL below: pulumi config "
                  "overrides each."]
        return lines

    def helpers(self) -> list[str]:
        return [
            "def _get(value, key):",
            "    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)",
            "",
            "",
            "def _ref(resource, section, key, known):",
            '    """Output `key` of another object this program declares (its metadata or status, once Pulumi has',
            '    it; `known`: the value mlplat knows statically). Waits for that object."""',
            "    state = getattr(resource, section, None)",
            "    if state is None:  # e.g. a CustomResource: no typed status",
            "        return resource.urn.apply(lambda _: known)",
            "    return state.apply(lambda s: known if _get(s, key) is None else _get(s, key))",
            "",
        ]

    def provider_lines(self) -> list[str]:
        lines = _comment("One provider per onprem target: kubeconfig (a path or its contents) and context from "
                         "pulumi config (kubeconfig-<target>, context-<target> when there are several), else the "
                         "stack file's settings, else the kubeconfig's defaults. "
                         "Server-side apply, like mlplat (whose field manager is `mlplat`; Pulumi's is its own).")
        lines.append("providers = {}")
        several = len(self.onprem_targets) > 1
        for name in self.onprem_targets:
            settings = self.stack.targets[name].settings
            kubeconfig = getattr(settings, "kubeconfig", None)
            context = getattr(settings, "context", None)
            keys = [f"kubeconfig-{_config_key(name)}"] if several else ["kubeconfig"]
            ctx_keys = [f"context-{_config_key(name)}"] if several else ["context"]
            kc = " or ".join([*(f"config.get({k!r})" for k in keys), repr(kubeconfig)])
            cx = " or ".join([*(f"config.get({k!r})" for k in ctx_keys), repr(context)])
            lines += [f"providers[{name!r}] = k8s.Provider(",
                      f"    {('k8s-' + name)!r},",
                      f"    kubeconfig={kc},",
                      f"    context={cx},",
                      "    enable_server_side_apply=True,",
                      ")"]
        return [*lines, ""]

    def external_lines(self) -> list[str]:
        if not self.external:
            return []
        lines = _comment("Values from outside this program (model artifacts, other targets' resources): pulumi "
                         "config KEY overrides each default.")
        lines.append("EXTERNAL = {")
        by_address: dict[str, list[_External]] = {}
        for e in self.external.values():
            by_address.setdefault(e.address, []).append(e)
        for address, items in sorted(by_address.items()):
            lines.append(f"    {address!r}: {{")
            for e in items:
                lines += _comment(f"{e.why}; config key {e.key}", "        ")
                line = f"        {e.output!r}: config.get({e.key!r}) or {e.default!r},"
                if len(line) > WIDTH:
                    line = f"        {e.output!r}: (config.get({e.key!r})\n{' ' * 12}or {e.default!r}),"
                lines.append(line)
            lines.append("    },")
        lines += ["}", "", ""]
        return lines


def export_pulumi(stack: Stack) -> Files:
    resources, outputs = stack.lower()
    program = _Program(stack, resources, outputs)
    program.classify()
    if not program.onprem_targets:
        raise MlplatError(f"stack {stack.name!r} has nothing on an onprem target: no Kubernetes objects to export",
                          hint="the pulumi format exports the onprem target's objects only")
    main = program.main_py()  # renders EXTERNAL as it goes: before anything reads it
    if program.left_out:
        program.notes.insert(0, "left out (not onprem objects): " + "; ".join(program.left_out))
    if program.artifacts:
        program.notes.append(f"{len(program.artifacts)} model(s) to push before the full `pulumi up` (see MODELS in "
                             "__main__.py)")
    project = _config_key("mlplat", stack.name) or "mlplat"
    files = {
        "__main__.py": main,
        "Pulumi.yaml": (f"name: {project}\nruntime: python\n"
                        f"description: mlplat stack {json.dumps(stack.name)} (its onprem objects), exported by "
                        "mlplat export --format pulumi\n"),
        "requirements.txt": "pulumi>=3.100.0,<4.0.0\npulumi-kubernetes>=4.0.0,<5.0.0\n",
        "README.md": _readme(program, project),
        "automation.py": AUTOMATION,
    }
    return Files(files, program.notes)


def _readme(program: _Program, project: str) -> str:
    stack = program.stack
    parts = [textwrap.dedent(f"""\
        # {project}: Pulumi program of mlplat stack `{stack.name}`

        Written by `mlplat export --format pulumi`: {len(program.declared)} Kubernetes objects of the stack's onprem
        target(s) ({', '.join(program.onprem_targets) or 'none'}), declared with pulumi-kubernetes (server-side
        apply), `depends_on` as mlplat orders them. Export again after changing the stack file.

        ## Run it with the Pulumi CLI

        Install the CLI ({INSTALL_URL}), then:

        ```sh
        python -m venv venv && . venv/bin/activate && pip install -r requirements.txt
        pulumi login --local            # or your Pulumi Cloud / self-managed backend
        pulumi stack init dev
        pulumi config set kubeconfig ~/.kube/config   # a path, or the file's contents (--secret)
        pulumi config set context my-cluster          # optional: default is the kubeconfig's current-context
        pulumi preview
        pulumi up
        ```
        """)]
    if len(program.onprem_targets) > 1:
        keys = ", ".join(f"`kubeconfig-{_config_key(t)}`/`context-{_config_key(t)}`" for t in program.onprem_targets)
        parts.append(f"With several onprem targets each has its own keys: {keys}.\n")
    if program.artifacts:
        parts.append(textwrap.dedent("""\
            ## Models

            Pulumi cannot push a model into the cluster's registry. Declare only what the models need first, push
            them (the commands are in the MODELS comment of `__main__.py`), then declare the rest:

            ```sh
            pulumi config set registry-only true
            pulumi up
            # push the models: the oras commands in __main__.py
            pulumi config rm registry-only
            pulumi up
            ```
            """))
    if program.canary_gate:
        parts.append(textwrap.dedent("""\
            ## KServe canaries

            A canary rolls out against the InferenceService's running revision. On a new one, declare production
            first: `pulumi config set kserve-canary false`, `pulumi up`, then `pulumi config rm kserve-canary`,
            `pulumi up`.
            """))
    parts.append(textwrap.dedent("""\
        ## Run it with the Automation API

        `automation.py` drives the same program from Python (it needs the Pulumi CLI on PATH too):

        ```sh
        python automation.py up --stack dev --kubeconfig ~/.kube/config [--context my-cluster]
        python automation.py preview --stack dev
        python automation.py destroy --stack dev
        ```

        ## Objects mlplat already made

        mlplat server-side applies with field manager `mlplat`; Pulumi applies with its own. To hand a running stack
        over, `mlplat destroy` it first, or `pulumi import` each object (a field both managers set is a conflict).
        """))
    if program.left_out:
        parts.append("## Left out\n\n" + "".join(f"- {item}\n" for item in program.left_out))
    return "\n".join(parts)


AUTOMATION = '''\
"""Run this Pulumi program with the Automation API: python automation.py {up,preview,destroy,refresh} --stack NAME
[--kubeconfig PATH] [--context NAME]. It drives the `pulumi` CLI, which must be on PATH."""

import argparse
import shutil
import sys
from pathlib import Path

INSTALL = "https://www.pulumi.com/docs/install/"


def main(argv=None):
    if shutil.which("pulumi") is None:
        sys.stderr.write("error: the pulumi CLI is not on PATH; the Automation API runs it. Install it: "
                         f"{INSTALL} (e.g. curl -fsSL https://get.pulumi.com | sh), then run this again\\n")
        return 2
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "preview", "destroy", "refresh"])
    parser.add_argument("--stack", default="dev", help="Pulumi stack name (made when missing)")
    parser.add_argument("--kubeconfig", help="kubeconfig path (pulumi config kubeconfig)")
    parser.add_argument("--context", help="kubeconfig context (pulumi config context)")
    args = parser.parse_args(argv)

    from pulumi import automation as auto

    stack = auto.create_or_select_stack(stack_name=args.stack, work_dir=str(Path(__file__).resolve().parent))
    for key in ("kubeconfig", "context"):
        value = getattr(args, key)
        if value:
            stack.set_config(key, auto.ConfigValue(value=value))
    run = {"up": stack.up, "preview": stack.preview, "destroy": stack.destroy, "refresh": stack.refresh}
    result = run[args.command](on_output=print)
    summary = getattr(result, "summary", None)
    if summary is not None:
        print(f"{args.command}: {summary.result} {summary.resource_changes or {}}")
    for name, output in (getattr(result, "outputs", None) or {}).items():
        print(f"{name} = {output.value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

EXPORTER = Exporter("pulumi", "a Pulumi Python program (pulumi-kubernetes) of the onprem objects: -o DIR",
                    export_pulumi)
