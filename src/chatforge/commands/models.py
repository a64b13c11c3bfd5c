"""List the model catalog (names usable wherever a MODEL is asked for) and what is cached locally."""


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="Print machine-readable JSON.")


def run(args) -> int:
    import json

    from chatforge.models.catalog import CATALOG, DEFAULT_MODEL
    from chatforge.models.resolve import cached_models, catalog_status, license_file

    rows = [dict(name=e.name, default=e.name == DEFAULT_MODEL, status=catalog_status(e), hub_id=e.hub_id,
                 description=e.description, base=e.base, license=e.license,
                 license_file=str(license_file(e)) if license_file(e) else None) for e in CATALOG.values()]
    cached = cached_models()
    if args.json:
        print(json.dumps({"catalog": rows, "cached": cached}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    print("Catalog (use the name wherever a MODEL is asked for):")
    for r in rows:
        mark = "*" if r["default"] else " "
        print(f" {mark} {r['name']:<{width}}{r['status']:<14}{r['description']}")
    print("  (* = default)")
    for r in rows:
        if r["license"]:
            local = f"; a copy is in {r['license_file']}" if r["license_file"] else ""
            print(f"\n{r['name']}: its weights are provided under the {r['license']}{local}. By using them "
                  "you accept those terms.")
    print("\nCached locally:")
    for c in cached or [{"name": "(none)", "path": ""}]:
        print(f"   {c['name']:<{width + 14}}{c['path']}".rstrip())
    return 0
