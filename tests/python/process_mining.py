"""Reads filiera's process-mining exports with PM4Py, as an analyst would, and prints what
PM4Py sees as one JSON document: for the OCEL 2.0 log and for the XES log, the traces (cases)
and events, events by type, stage entries by classification and by (from_stage, stage), and
the directly-follows counts of the stage entries of each beneficiary, discovered by PM4Py.

Usage: python process_mining.py LOG.jsonocel LOG.xes
"""

import json
import sys
from collections import Counter

import pandas as pd
import pm4py

CASE = "case:concept:name"
ACTIVITY = "concept:name"
TIMESTAMP = "time:timestamp"


def value(x):
    return None if pd.isna(x) else x


def in_order(df):
    # Several events of a beneficiary can share a day: `position` (the global feed order)
    # breaks the tie, as docs/process-mining.md says.
    return df.sort_values([CASE, TIMESTAMP, "position"], kind="stable")


def follows(stage_entries):
    if len(stage_entries) == 0:
        return []
    dfg, _start, _end = pm4py.discover_dfg(
        in_order(stage_entries),
        activity_key=ACTIVITY,
        timestamp_key=TIMESTAMP,
        case_id_key=CASE,
    )
    return [[a, b, int(n)] for (a, b), n in dfg.items()]


def summary(df, stage_entries):
    entries = df[df["event_type"] == "StageEntered"]
    matrix = Counter(
        (value(f), s) for f, s in zip(entries["from_stage"], entries["stage"])
    )
    return {
        "traces": int(df[CASE].nunique()),
        "events": int(len(df)),
        "types": {k: int(v) for k, v in Counter(df["event_type"]).items()},
        "transitions": {k: int(v) for k, v in Counter(entries["transition"]).items()},
        "matrix": [[f, t, int(n)] for (f, t), n in matrix.items()],
        "activities_of_entries": sorted(set(entries[ACTIVITY]) - set(entries["stage"])),
        "follows": follows(stage_entries),
    }


def ocel_summary(path):
    ocel = pm4py.read_ocel2_json(path)
    flat = pm4py.ocel_flattening(ocel, "beneficiary")
    entries = pm4py.filter_ocel_event_attribute(ocel, "event_type", ["StageEntered"])
    flat_entries = pm4py.ocel_flattening(entries, "beneficiary")
    result = summary(flat, flat_entries)
    objects = ocel.objects[ocel.object_type_column]
    result["beneficiaries"] = int((objects == "beneficiary").sum())
    result["providers"] = int((objects == "provider").sum())
    result["ocel_events"] = int(len(ocel.events))
    return result


def xes_summary(path):
    log = pm4py.read_xes(path)
    entries = pm4py.filter_event_attribute_values(
        log, "event_type", ["StageEntered"], level="event", retain=True
    )
    result = summary(log, entries)
    result["lifecycles"] = sorted(set(log["lifecycle:transition"]))
    return result


if __name__ == "__main__":
    ocel_path, xes_path = sys.argv[1], sys.argv[2]
    print(json.dumps({"ocel": ocel_summary(ocel_path), "xes": xes_summary(xes_path)}))
