"""Checks of the Helm chart and the example manifests that need Python tools.

    python tests/chart/chart_check.py render   # JSON of every rendered case, for the Rust tests
    python tests/chart/chart_check.py check    # lint, render, validate; exit 1 on any problem

Cases: the chart's default values, then each charts/coebench/ci/*-values.yaml, rendered as
release "coebench" in namespace "coebench-system". `check`:
- lints the chart with the Helm SDK (helm-python-sdk, strict: warnings fail) for each case;
- validates every rendered object with kubernetes-validate --strict against the Kubernetes
  KUBE_VERSION schemas (ServiceMonitor, PodMonitor and PrometheusRule have none there and are
  skipped; the PrometheusRule's alerts are tested with `promtool test rules` in tests/chart/);
- validates every CoeBenchmark and CoeBenchmarkRun in examples/*.yaml with jsonschema against
  the openAPIV3Schema of crds/, with unknown fields refused as kubectl's strict field
  validation refuses them, and every other example object with kubernetes-validate.
Structural checks of the rendered objects (RBAC, security, CRDs equal to crds/) are Rust tests
in tests/chart/, which call `render`.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "coebench"
RELEASE = "coebench"
NAMESPACE = "coebench-system"
# The oldest Kubernetes the chart targets that kubernetes-validate has schemas for.
KUBE_VERSION = "1.33.0"
# Kinds whose schemas kubernetes-validate does not ship (prometheus-operator CRDs).
UNVALIDATED_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys, which kubectl refuses too."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(text: str) -> list[dict]:
    """The non-empty documents of a YAML stream, duplicate keys refused."""
    return [d for d in yaml.load_all(text, Loader=StrictLoader) if d]


def cases() -> list[tuple[str, dict]]:
    """(name, values) of the default case and of each CI values file."""
    found = [("default", {})]
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        found.append((path.name.removesuffix("-values.yaml"), yaml.safe_load(path.read_text()) or {}))
    return found


def render(chart: helm.Chart, values: dict) -> tuple[list[dict], str]:
    """The rendered objects (in template order) and NOTES.txt."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects, notes = [], ""
    for template in sorted(manifests):
        text = manifests[template]
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in load_all(text):
            doc.setdefault("metadata", {}).setdefault("annotations", {})
            doc["metadata"]["annotations"]["coebench.test/template"] = template
            objects.append(doc)
    return objects, notes


def strip_test_annotation(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    annotations = obj["metadata"]["annotations"]
    annotations.pop("coebench.test/template", None)
    if not annotations:
        del obj["metadata"]["annotations"]
    return obj


def render_all() -> dict:
    with helm.Chart.load(CHART) as chart:
        out = {}
        for name, values in cases():
            objects, notes = render(chart, values)
            out[name] = {
                "values": values,
                "objects": [strip_test_annotation(o) for o in objects],
                "notes": notes,
            }
        return {"release": RELEASE, "namespace": NAMESPACE, "cases": out}


def k8s_validate(obj: dict, where: str, problems: list[str]) -> bool:
    """kubernetes-validate --strict on one object; False when the kind has no schema."""
    if obj.get("kind") in UNVALIDATED_KINDS:
        return False
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        problems.append(f"{where}: {obj['kind']}/{obj['metadata'].get('name')}: {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        problems.append(f"{where}: {e.message}")
    return True


def check_chart(problems: list[str]) -> int:
    objects_checked = 0
    with helm.Chart.load(CHART) as chart:
        for name, values in cases():
            report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
            for message in report.get("messages") or []:
                # Severity 1 is informational (e.g. "icon is recommended"); 2 and 3 fail.
                if message.get("severity", 0) >= 2:
                    problems.append(f"lint ({name}): {message.get('path')}: {message.get('error')}")
            for error in report.get("errors") or []:
                problems.append(f"lint ({name}): {error}")
            try:
                objects, notes = render(chart, values)
            except (helm.HelmError, yaml.YAMLError) as e:
                problems.append(f"render ({name}): {e}")
                continue
            if "kubectl get coeb,coebr" not in notes:
                problems.append(f"render ({name}): NOTES.txt does not say how to watch a benchmark")
            for obj in objects:
                template = obj["metadata"]["annotations"]["coebench.test/template"]
                if k8s_validate(strip_test_annotation(obj), f"{name}: {template}", problems):
                    objects_checked += 1
    return objects_checked


def crd_schemas() -> dict[str, dict]:
    """kind -> JSON schema of the CRD's openAPIV3Schema, made checkable by jsonschema."""
    schemas = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = next(d for d in yaml.safe_load_all(path.read_text()) if d)
        version = crd["spec"]["versions"][0]
        schema = strict_schema(version["schema"]["openAPIV3Schema"])
        # The API server fills these; a manifest may set metadata freely.
        schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
        schema["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
        schema["properties"]["metadata"] = {"type": "object"}
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        schemas[crd["spec"]["names"]["kind"]] = schema
    return schemas


def strict_schema(node: dict) -> dict:
    """OpenAPI v3 (Kubernetes structural schema) to JSON Schema: `nullable` becomes a null
    type, and objects with properties refuse unknown fields (as strict field validation does)."""
    node = dict(node)
    if node.get("nullable") and "type" in node:
        node["type"] = [node["type"], "null"]
        if "enum" in node:
            node["enum"] = node["enum"] + [None]
    node.pop("nullable", None)
    if "properties" in node:
        node["properties"] = {k: strict_schema(v) for k, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = strict_schema(node["additionalProperties"])
    if "items" in node:
        node["items"] = strict_schema(node["items"])
    return node


def check_examples(problems: list[str]) -> int:
    schemas = crd_schemas()
    checked = 0
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        where = str(path.relative_to(ROOT))
        try:
            docs = load_all(path.read_text())
        except yaml.YAMLError as e:
            problems.append(f"{where}: not YAML: {e}")
            continue
        for doc in docs:
            kind = doc.get("kind")
            if kind in schemas:
                validator = jsonschema.Draft202012Validator(schemas[kind])
                for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                    field = ".".join(str(p) for p in error.path) or "(root)"
                    problems.append(f"{where}: {kind}/{doc['metadata'].get('name')}: {field}: {error.message}")
                checked += 1
            elif kind:
                doc.setdefault("metadata", {})
                if k8s_validate(doc, where, problems):
                    checked += 1
            # A plan file (examples/quickstart.yaml) has no kind; the runner's tests cover it.
    return checked


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "render":
        json.dump(render_all(), sys.stdout)
        return 0
    if command != "check":
        print(__doc__, file=sys.stderr)
        return 2
    problems: list[str] = []
    objects = check_chart(problems)
    examples = check_examples(problems)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print(
        f"chart: {len(cases())} value sets linted (strict) and rendered, {objects} objects valid for "
        f"Kubernetes {KUBE_VERSION}; examples: {examples} objects valid; {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
