"""Reads the deployment files for crates/filiera/tests/deploy.rs.

Usage: python files.py DEPLOY_DIR KUBERNETES_VERSION MANIFEST...

Prints one JSON document: every YAML file under DEPLOY_DIR parsed (anchors and merge keys
resolved, as Docker Compose and Kubernetes read them), and the result of validating each
MANIFEST against the Kubernetes schemas of KUBERNETES_VERSION (kubernetes-validate, offline,
strict: an unknown field is an error), and the compose file against the Compose
Specification's JSON Schema.

compose-spec.json beside this file is the Compose Specification's schema, copied unchanged from
github.com/compose-spec/compose-spec (schema/compose-spec.json, commit 170098ba07d9, Apache
License 2.0).
"""

import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml


def main():
    deploy = pathlib.Path(sys.argv[1])
    version = sys.argv[2]
    documents = {}
    for path in sorted(deploy.rglob("*")):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            with path.open() as file:
                documents[str(path.relative_to(deploy))] = list(yaml.safe_load_all(file))
    validated = []
    errors = []
    for name in sys.argv[3:]:
        with open(name) as file:
            for document in yaml.safe_load_all(file):
                resource = f"{name}: {document.get('kind')}/{document['metadata'].get('name')}"
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                    validated.append(resource)
                except kubernetes_validate.ValidationError as error:
                    errors.append(f"{resource}: {error.path}: {error.message}")
                except Exception as error:  # noqa: BLE001 (an unknown kind or version)
                    errors.append(f"{resource}: {error}")
    schema = json.loads((pathlib.Path(__file__).parent / "compose-spec.json").read_text())
    compose = documents["compose/compose.yaml"][0]
    for error in jsonschema.Draft7Validator(schema).iter_errors(compose):
        path = ".".join(str(part) for part in error.absolute_path)
        errors.append(f"compose/compose.yaml: {path}: {error.message}")
    json.dump({"documents": documents, "validated": validated, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
