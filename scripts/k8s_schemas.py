#!/usr/bin/env python3
"""JSON schemas for kubeconform, offline.

    k8s_schemas.py k8s SRC_DIR OUT_DIR    Kubernetes' own kinds: SRC_DIR is a
        `vX.Y.Z-local-strict` directory of the PyPI package kubernetes-validate, whose
        schemas point into a shared `/api/_definitions.json`; each kind is written to
        OUT_DIR/<kind>-<group>-<version>.json standalone (the definitions it reaches, inlined).
    k8s_schemas.py crd OUT_DIR CRD.yaml...  custom resources: each served version of each
        CustomResourceDefinition becomes OUT_DIR/<group>/<kind>_<version>.json, strict
        (no unknown fields where the CRD lists the fields, as the API server prunes them).
"""
import json
import pathlib
import re
import sys

import yaml

REF = re.compile(r'"\$ref": "/api/_definitions\.json#/\$defs/([^"]+)"')
LOCAL_REF = re.compile(r'"\$ref": "#/\$defs/([^"]+)"')


def k8s(src, out):
    src, out = pathlib.Path(src), pathlib.Path(out)
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    # Each definition's text with local refs, and the definitions it names.
    local = {}
    for name, d in defs.items():
        text = REF.sub(lambda m: '"$ref": "#/$defs/' + m.group(1) + '"', json.dumps(d))
        local[name] = (json.loads(text), set(LOCAL_REF.findall(text)))
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for f in sorted(src.glob("*.json")):
        if f.name.startswith("_") or f.name == "all.json":
            continue
        text = f.read_text()
        todo, seen = set(REF.findall(text)), set()
        while todo:
            name = todo.pop()
            if name in seen or name not in local:
                continue
            seen.add(name)
            todo |= local[name][1] - seen
        schema = json.loads(REF.sub(lambda m: '"$ref": "#/$defs/' + m.group(1) + '"', text))
        schema.pop("$id", None)
        schema["$defs"] = {name: local[name][0] for name in sorted(seen)}
        (out / f.name).write_text(json.dumps(schema))
        written += 1
    print(f"{written} Kubernetes schemas in {out}", file=sys.stderr)


def strict(node):
    if isinstance(node, dict):
        if (node.get("type") == "object" and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


def crd(out, files):
    out = pathlib.Path(out)
    written = 0
    for f in files:
        for doc in yaml.safe_load_all(pathlib.Path(f).read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"].lower()
            for v in spec["versions"]:
                schema = v.get("schema", {}).get("openAPIV3Schema")
                if not schema or not v.get("served", True):
                    continue
                schema = strict(schema)
                # apiVersion, kind and metadata are checked by the API server, not the CRD.
                schema.setdefault("properties", {}).update({
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"}})
                target = out / group / f"{kind}_{v['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema))
                written += 1
    print(f"{written} custom resource schemas in {out}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "k8s":
        k8s(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "crd":
        crd(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
