# Table and figure specifications built from the experiment matrix in config (functions only).
# A table spec names, per cell, the metrics file and the value in it; `python -m mokd table` renders it
# beside the reported numbers of config/reported.csv (ids: table, row key, column key).

TABLE_TITLES = {
    "t1": ("Table T1: ImageNet k-NN and linear top-1, independent (DINO) vs MOKD", True),
    "t2": ("Table T2: small students with a larger partner, linear top-1", True),
    "t3": ("Table T3: semi-supervised fine-tuning on 1 % and 10 % of the labels, top-1", True),
    "t4": ("Table T4: transfer by fine-tuning on CIFAR-10 and CIFAR-100, top-1", True),
    "t5": ("Table T5: COCO detection and instance segmentation, C4 Mask R-CNN", True),
    "t6": ("Table T6: ablation of the distillation modes (ImageNet-100)", True),
    "s1": ("Table S1: results on other convnets (linear top-1; larger then smaller model)", False),
    "s2": ("Table S2: influence of the T-Head depth", False),
    "s3": ("Table S3: training time and memory requirement", False),
}


def pair_key(exp):
    """The id of a pair in config/reported.csv, e.g. R50-ViT-S."""
    return "-".join(label(r) for r in EXPERIMENTS[exp]["models"])


def baseline_of(role):
    """The DINO baseline experiment of a model: by convention `dino_<role>`."""
    exp = f"dino_{role}"
    if exp not in EXPERIMENTS:
        raise WorkflowError(f"config key 'experiments': the tables need the DINO baseline {exp!r} of model {role!r}")
    return exp


def caption(roles):
    s = config["scale"]
    stand = "; ".join(f"{label(r)} = {MODELS[r]['stand_in']}" for r in roles if MODELS[r].get("stand_in"))
    text = f"Scale '{s['name']}': {s['description'].strip()}."
    return text + (f" Models: {stand}." if stand else "")


def cell(exp, role, protocol, value="metrics.top1"):
    return {"metrics": metrics(exp, role, protocol), "value": value}


def table_config_hash(rows):
    """Hash of the config slices a table's numbers come from (its experiments and protocols), so that
    editing one experiment reruns only the tables that show it."""
    exps, protocols = set(), set()
    for row in rows:
        for c in row["cells"].values():
            paths = c.get("metrics")
            for m in paths if isinstance(paths, list) else ([paths] if paths else []):
                parts = Path(m).parts
                i = len(parts) - 4  # .../eval/<exp>/<role>/<protocol>.json
                if parts[i] == "eval":
                    exps.add(parts[i + 1])
                    protocols.add(Path(m).stem)
    return config_hash({
        "scale": config["scale"],
        "experiments": {e: pretrain_config(e) for e in sorted(exps)},
        "protocols": {p: protocol_settings(p) for p in sorted(protocols)},
    })


def spec(table, columns, rows, roles, derived=(), notes=(), decimals=1):
    title, reconstructed = TABLE_TITLES[table]
    return {
        "id": table,
        "title": title,
        "caption": caption(sorted(set(roles), key=list(MODELS).index)),
        "reconstructed": reconstructed,
        "columns": [{"key": k, "label": l} for k, l in columns],
        "derived": [{"key": k, "label": l, "minus": list(m)} for k, l, m in derived],
        "rows": rows,
        "notes": list(notes),
        "decimals": decimals,
        "footer": {"config_hash": table_config_hash(rows), "code_version": CODE_VERSION},
    }


def model_rows(pairs, protocols, prefix_dino=True):
    """Rows `<model>@<pair>` with DINO and MOKD cells (and their difference) for every protocol."""
    rows, roles = [], []
    for exp in pairs:
        for role in EXPERIMENTS[exp]["models"]:
            cells = {}
            for col, protocol in protocols.items():
                cells[f"{col}_dino"] = cell(baseline_of(role), role, protocol)
                cells[f"{col}_mokd"] = cell(exp, role, protocol)
            rows.append({"key": f"{label(role)}@{pair_key(exp)}", "label": f"{label(role)} ({pair_label(exp)})", "cells": cells})
            roles.append(role)
    return rows, roles


def gain_columns(protocols):
    columns, derived = [], []
    for col in protocols:
        name = col.replace("_", " ")
        columns += [(f"{col}_dino", f"{name} DINO"), (f"{col}_mokd", f"{name} MOKD")]
        derived.append((f"{col}_gain", f"{name} Δ", (f"{col}_mokd", f"{col}_dino")))
    return columns, derived


def protocol_map(t):
    """A table's protocols as {column key: protocol}: a list uses each protocol's name as its key."""
    p = t["protocols"]
    return dict(p) if isinstance(p, dict) else {name: name for name in p}


def spec_t1():
    t = config["tables"]["t1"]
    protocols = protocol_map(t)
    rows, roles = model_rows(t["pairs"], protocols)
    columns, derived = gain_columns(protocols)
    return spec("t1", columns, rows, roles, derived)


def spec_t2():
    t = config["tables"]["t2"]
    rows, roles = [], []
    for exp in t["pairs"]:
        big, small = EXPERIMENTS[exp]["models"]
        rows.append({
            "key": f"{label(small)}@{pair_key(exp)}",
            "label": f"{label(small)} with {label(big)}",
            "cells": {
                "teacher_linear_mokd": cell(exp, big, t["protocol"]),
                "linear_dino": cell(baseline_of(small), small, t["protocol"]),
                "linear_mokd": cell(exp, small, t["protocol"]),
            },
        })
        roles += [big, small]
    columns = [("teacher_linear_mokd", "larger model, MOKD"), ("linear_dino", "smaller, DINO"), ("linear_mokd", "smaller, MOKD")]
    derived = [("linear_gain", "smaller Δ (MOKD−DINO)", ("linear_mokd", "linear_dino"))]
    notes = ["SEED, ReKD and DisCo numbers for these students are in Table S1 (R50/R101 with Eff-b0 and Mob-v3)."]
    return spec("t2", columns, rows, roles, derived, notes)


def spec_fine_tuning(table):
    t = config["tables"][table]
    protocols = protocol_map(t)
    rows, roles = model_rows(t["pairs"], protocols)
    columns, derived = gain_columns(protocols)
    return spec(table, columns, rows, roles, derived)


def spec_t5():
    t = config["tables"]["t5"]
    keys = [("AP_bbox", "AP^b"), ("AP50_bbox", "AP^b_50"), ("AP75_bbox", "AP^b_75"),
            ("AP_segm", "AP^s"), ("AP50_segm", "AP^s_50"), ("AP75_segm", "AP^s_75")]
    rows, roles = [], []
    for exp, role in t["rows"]:
        method = "DINO" if len(EXPERIMENTS[exp]["models"]) == 1 else f"MOKD ({pair_label(exp)})"
        rows.append({
            "key": f"{label(role)}@{'DINO' if len(EXPERIMENTS[exp]['models']) == 1 else pair_key(exp)}",
            "label": f"{label(role)}, {method}",
            "cells": {k: cell(exp, role, t["protocol"], f"metrics.{k}") for k, _ in keys},
        })
        roles.append(role)
    return spec("t5", keys, rows, roles)


def spec_t6():
    t = config["tables"]["t6"]
    protocols = protocol_map(t)
    first = next(iter(t["rows"].values()))
    pair_roles = [r for e in (first if isinstance(first, list) else [first]) for r in EXPERIMENTS[e]["models"]]
    rows = []
    for name, exps in t["rows"].items():
        exps = exps if isinstance(exps, list) else [exps]
        cells = {}
        for role in pair_roles:
            exp = next((e for e in exps if role in EXPERIMENTS[e]["models"]), None)
            if exp is None:
                raise WorkflowError(f"config key 'tables.t6.rows.{name}': no experiment trains {role!r}")
            for col, protocol in protocols.items():
                cells[f"{role}_{col}"] = cell(exp, role, protocol)
        rows.append({"key": name, "label": name, "cells": cells})
    columns = [(f"{r}_{c}", f"{label(r)} {c.replace('_', ' ')}") for r in pair_roles for c in protocols]
    return spec("t6", columns, rows, pair_roles)


def spec_s1():
    t = config["tables"]["s1"]
    columns, mokd_cells, roles = [], {}, []
    for exp in t["pairs"]:
        for role in EXPERIMENTS[exp]["models"]:
            key = f"{label(role)}@{pair_key(exp)}"
            columns.append((key, f"{label(role)} ({pair_label(exp)})"))
            mokd_cells[key] = cell(exp, role, t["protocol"])
            roles.append(role)
    rows = [{"key": m, "label": f"{m} (reported only)", "cells": {}} for m in ("SEED", "ReKD", "DisCo")]
    rows.append({"key": "MOKD", "label": "MOKD", "cells": mokd_cells})
    return spec("s1", columns, rows, roles)


def spec_s2():
    t = config["tables"]["s2"]
    depths = {int(d): e for d, e in t["depths"].items()}
    roles = EXPERIMENTS[next(iter(depths.values()))]["models"]
    rows = [
        {"key": f"depth{d}", "label": f"depth {d}", "cells": {label(r): cell(exp, r, t["protocol"]) for r in roles}}
        for d, exp in sorted(depths.items())
    ]
    return spec("s2", [(label(r), label(r)) for r in roles], rows, roles)


def cost_metrics():
    return f"{R}/eval/cost/s3.json"


def spec_s3():
    t = config["tables"]["s3"]
    cost = cost_metrics()
    mokd = t["mokd"]
    dino_models = " / ".join(label(EXPERIMENTS[e]["models"][0]) for e in t["dino"])
    rows = [
        {"key": "DINO", "label": f"DINO ({dino_models})", "cells": {
            "time_h": {"metrics": cost, "value": "metrics.rows.DINO.train_time_h_text"},
            "mem_gb": {"metrics": cost, "value": "metrics.rows.DINO.peak_memory_gb_text"},
            "linear": {"metrics": [metrics(e, EXPERIMENTS[e]["models"][0], t["protocol"]) for e in t["dino"]],
                       "value": "metrics.top1", "join": "/"},
        }},
        {"key": "MOKD", "label": f"MOKD ({pair_label(mokd)})", "cells": {
            "time_h": {"metrics": cost, "value": "metrics.rows.MOKD.train_time_h_text"},
            "mem_gb": {"metrics": cost, "value": "metrics.rows.MOKD.peak_memory_gb_text"},
            "linear": {"metrics": [metrics(mokd, r, t["protocol"]) for r in EXPERIMENTS[mokd]["models"]],
                       "value": "metrics.top1", "join": "/"},
        }},
    ]
    roles = EXPERIMENTS[mokd]["models"]
    notes = ["Time: total pre-training hours; memory: peak per device (GPU: max allocated; CPU: peak process RSS)."]
    return spec("s3", [("time_h", "Time (h)"), ("mem_gb", "Mem. (G)"), ("linear", "LP")], rows, roles, notes=notes, decimals=2)


TABLE_SPECS = {
    "t1": spec_t1, "t2": spec_t2, "t3": lambda: spec_fine_tuning("t3"), "t4": lambda: spec_fine_tuning("t4"),
    "t5": spec_t5, "t6": spec_t6, "s1": spec_s1, "s2": spec_s2, "s3": spec_s3,
}


def table_spec(table):
    return TABLE_SPECS[table]()


def table_inputs(table):
    """Every metrics file a table reads."""
    files = []
    for row in table_spec(table)["rows"]:
        for c in row["cells"].values():
            m = c.get("metrics")
            files += m if isinstance(m, list) else ([m] if m else [])
    return sorted(set(files))


def cost_inputs():
    t = config["tables"]["s3"]
    return [export_dir(e) for e in t["dino"] + [t["mokd"]]]


def cost_settings():
    t = config["tables"]["s3"]
    return {"scale": SCALE, "rows": [{"name": "DINO", "runs": list(t["dino"])}, {"name": "MOKD", "runs": [t["mokd"]]}]}


# ------------------------------------------------------------------------------------------ figures
def figure_kind(fig):
    return "tsne" if "tsne" in fig else "attn-distance"


def figure_members(fig):
    """[(experiment, role, display label)] of a figure, in the order they are passed to the command."""
    f = config["figures"][fig]
    out = []
    if figure_kind(fig) == "tsne":
        for exp, baselines in f["pairs"]:
            for role in EXPERIMENTS[exp]["models"]:
                out.append((exp, role, f"{label(role)} (MOKD, {pair_label(exp)})"))
            for b in baselines:
                role = EXPERIMENTS[b]["models"][0]
                out.append((b, role, f"{label(role)} (DINO)"))
    else:
        for exp, role in f["models"]:
            method = "DINO" if len(EXPERIMENTS[exp]["models"]) == 1 else f"MOKD {pair_label(exp)}"
            out.append((exp, role, f"{label(role)} ({method})"))
    return out


def figure_settings(fig):
    f = config["figures"][fig]
    s = copy.deepcopy(f["settings"])
    s["data"] = dataset_spec(f["dataset"])
    s["scale"] = SCALE
    s["labels"] = [m[2] for m in figure_members(fig)]
    s.setdefault("mean", config["normalization"]["mean"])
    s.setdefault("std", config["normalization"]["std"])
    if figure_kind(fig) == "attn-distance":
        s["methods"] = ["DINO" if len(EXPERIMENTS[m[0]]["models"]) == 1 else "MOKD" for m in figure_members(fig)]
    return s


def all_targets():
    tables = [f"{R}/tables/table_{t}.{ext}" for t in config["tables"] for ext in ("md", "tex")]
    figures = [f"{R}/figures/{f}.{ext}" for f in config["figures"] for ext in ("png", "pdf")]
    return tables + figures
