"""Run inside one built Vercel function (cwd = the bundle, `python3.12 -S`): boot it as Vercel does, report JSON."""

# Standard library only: this runs against the bundle's own _vendor, not our venv.
import base64
import json
import os
import sys
import time

HEAVY = ("openai", "anthropic", "pinecone", "firecrawl", "boto3", "botocore", "tiktoken")


def main() -> None:
    root = os.getcwd()
    sys.path.insert(0, root)  # AWS Lambda puts the task root (/var/task) first on sys.path
    send_request = "--request" in sys.argv
    start = time.perf_counter()
    # Time our module alone: vc_init imports import_module from here, so wrap it before vc_init loads.
    from vercel_runtime import resolver

    app_import = {}
    original = resolver.import_module

    def timed_import_module(name, path):
        t, c = time.perf_counter(), time.process_time()
        try:
            return original(name, path)
        finally:
            app_import["ms"] = (time.perf_counter() - t) * 1000
            app_import["cpu_ms"] = (time.process_time() - c) * 1000

    resolver.import_module = timed_import_module
    import vc__handler__python as trampoline  # noqa: F401  (the file Vercel's Lambda handler points at)

    boot_ms = (time.perf_counter() - start) * 1000
    from vercel_runtime import vc_init

    name, variable = os.environ["__VC_HANDLER_MODULE_NAME"], os.environ["__VC_HANDLER_VARIABLE_NAME"]
    module = sys.modules[name]
    app_name, app = resolver.resolve_app(module, name, variable)
    kind = resolver.detect_app_type(app, name, app_name)[0]
    report = {
        "module": name, "variable": app_name, "interface": kind, "boot_ms": boot_ms,
        "app_import_ms": app_import.get("ms"), "app_import_cpu_ms": app_import.get("cpu_ms"),
        "module_file": getattr(module, "__file__", ""),
        "has_handler": hasattr(module, "handler"), "has_lambda_handler": hasattr(module, "lambda_handler"),
        "heavy_modules": sorted(m for m in HEAVY if m in sys.modules),
        "shared_from": list(getattr(sys.modules.get("shared"), "__path__", [])),
        "root": root, "sys_path": sys.path[:4],
    }
    if send_request:
        report["response"] = _request(vc_init.vc_handler)
    print("PROBE " + json.dumps(report))


def _request(vc_handler) -> dict:
    """One request through Vercel's own event handler: a route miss, answered by our app without a database."""
    payload = {"method": "GET", "path": "/api/__build_probe__", "headers": {"host": "probe.local"}}
    response = vc_handler({"body": json.dumps(payload)}, None)
    body = base64.b64decode(response.get("body", "")) if response.get("encoding") == "base64" \
        else (response.get("body") or "").encode()
    headers = {k.lower(): v[0] if isinstance(v, list) else v for k, v in response.get("headers", {}).items()}
    return {"status": response.get("statusCode"), "headers": headers, "body": body.decode("utf-8", "replace")}


if __name__ == "__main__":
    main()
