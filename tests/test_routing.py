"""The routing rules one by one, on hand-made metadata (end to end they are exercised by the client tests)."""

from __future__ import annotations

import pytest

from qdrant_compat.cards import InputSpec, ModelCard
from qdrant_compat.enums import Layout, Phase, Relation, Strategy, VectorState, Via
from qdrant_compat.errors import FingerprintMismatchError, IncompatibleModelError
from qdrant_compat.metadata import CompatMeta, Edge, JobState, VectorEntry
from qdrant_compat.routing import awaits_switch, candidate_routes, plan_query, plan_write, resolve_route, write_routes

SPEC = InputSpec(size=28, channels=1, mean=(0.5,), std=(0.5,))
V1 = ModelCard("m", "1", 8, SPEC, fingerprint="f1" * 8)
V2 = ModelCard("m", "2", 8, SPEC, fingerprint="f2" * 8)


def _meta(*entries: tuple[str, ModelCard, VectorState], edges=(), read=None) -> CompatMeta:
    vectors = {name: VectorEntry.for_card(card, state=state) for name, card, state in entries}
    return CompatMeta(vectors=vectors, read=read or entries[0][0], write=[entries[0][0]], edges=list(edges))


def _edge(relation=Relation.BCT, **evidence) -> Edge:
    return Edge(query=V2.ref, query_fingerprint=V2.fingerprint, stored=V1.ref, stored_fingerprint=V1.fingerprint,
                relation=relation, converter="m2-to-m1" if relation == Relation.ADAPTER else None, evidence=evidence)


def test_rule_1_the_stored_model_itself_searches_directly():
    r = resolve_route(V1, _meta(("m@1", V1, VectorState.ACTIVE)), "c")
    assert (r.vector, r.via) == ("m@1", Via.DIRECT)


def test_rule_2_a_bct_edge_whose_criterion_held_searches_the_old_vector():
    meta = _meta(("m@1", V1, VectorState.ACTIVE), edges=[_edge(criterion_met=True)])
    r = resolve_route(V2, meta, "c")
    assert (r.vector, r.via, r.converter) == ("m@1", Via.BCT, None)


def test_a_failed_or_revoked_bct_edge_is_no_route_and_the_refusal_says_why():
    meta = _meta(("m@1", V1, VectorState.ACTIVE), edges=[_edge(criterion_met=False, cross_top1=40.0, old_top1=42.0)])
    assert candidate_routes(V2, meta) == []
    with pytest.raises(IncompatibleModelError, match=r"failed the compatibility criterion \(cross top-1 40.0 vs old/old 42.0\)"):
        resolve_route(V2, meta, "c")
    meta.edges = [_edge(criterion_met=False, revoked="the old model was retrained")]
    with pytest.raises(IncompatibleModelError, match="was revoked: the old model was retrained"):
        resolve_route(V2, meta, "c")


def test_rule_3_an_adapter_edge_transforms_the_query_with_its_calibration():
    meta = _meta(("m@1", V1, VectorState.ACTIVE),
                 edges=[_edge(Relation.ADAPTER, score_calibration={"a": 0.5, "b": 0.1})])
    r = resolve_route(V2, meta, "c")
    assert (r.via, r.converter, r.calibration) == (Via.ADAPTER, "m2-to-m1", (0.5, 0.1))


def test_direct_beats_an_edge_and_the_read_vector_comes_first():
    meta = _meta(("m@1", V1, VectorState.ACTIVE), ("m@2", V2, VectorState.ACTIVE), edges=[_edge(criterion_met=True)],
                 read="m@2")
    assert [(r.vector, r.via) for r in candidate_routes(V2, meta)] == [("m@2", Via.DIRECT), ("m@1", Via.BCT)]
    assert resolve_route(V2, meta, "c").via == Via.DIRECT


def test_an_edge_for_other_bytes_of_either_model_is_ignored():
    other = ModelCard("m", "2", 8, SPEC, fingerprint="ff" * 8)
    meta = _meta(("m@1", V1, VectorState.ACTIVE), edges=[_edge(criterion_met=True)])
    with pytest.raises(IncompatibleModelError, match="holds vectors of m@1; a query with m@2 cannot search them"):
        resolve_route(other, meta, "c")
    meta.vectors["m@1"].fingerprint = "ee" * 8  # the stored vector was made by other bytes than the edge measured
    assert candidate_routes(V2, meta) == []


def test_same_name_and_version_with_other_bytes_is_always_an_error():
    meta = _meta(("m@1", V1, VectorState.ACTIVE))
    forged = ModelCard("m", "1", 8, SPEC, fingerprint="00" * 8)
    with pytest.raises(FingerprintMismatchError, match="same name and version, different bytes"):
        resolve_route(forged, meta, "c")


def test_retired_vectors_are_never_routed_to():
    meta = _meta(("m@2", V2, VectorState.ACTIVE), ("m@1", V1, VectorState.RETIRED), edges=[_edge(criterion_met=True)])
    assert [r.vector for r in candidate_routes(V2, meta)] == ["m@2"]
    with pytest.raises(IncompatibleModelError):
        resolve_route(V1, meta, "c")


def test_a_filling_vector_of_the_query_model_merges_with_a_compatible_route():
    meta = _meta(("m@1", V1, VectorState.ACTIVE), ("m@2", V2, VectorState.FILLING), edges=[_edge(criterion_met=True)])
    plan = plan_query(V2, meta, "c")
    assert (plan.route.vector, plan.route.via, plan.partial) == ("m@1", Via.BCT, "m@2")
    meta.vectors["m@2"].state = VectorState.ACTIVE  # complete: its own vector alone
    plan = plan_query(V2, meta, "c")
    assert (plan.route.vector, plan.partial) == ("m@2", None)


def test_a_filling_vector_without_a_route_to_the_rest_is_refused_not_half_answered():
    meta = _meta(("m@1", V1, VectorState.ACTIVE), ("m@2", V2, VectorState.FILLING))
    with pytest.raises(IncompatibleModelError, match="still being filled and no compatible route"):
        plan_query(V2, meta, "c")
    with pytest.raises(IncompatibleModelError):
        resolve_route(V2, meta, "c")  # a filling vector alone is no route either


# ------------------------------------------------------------------------------------------------------ writes
def _job(phase: Phase, layout: Layout = Layout.IN_PLACE, green: str | None = None) -> JobState:
    return JobState(id="j", source="m@1", source_model=V1.ref, target="m@2", target_model=V2.ref,
                    target_fingerprint=V2.fingerprint, strategy=Strategy.BACKFILL, phase=phase, layout=layout,
                    green=green)


def test_a_write_fills_every_write_vector_and_the_vector_being_filled_it_reaches():
    meta = _meta(("m@1", V1, VectorState.ACTIVE), ("m@2", V2, VectorState.FILLING), edges=[_edge(criterion_met=True)])
    assert [(r.vector, r.via) for r in write_routes(V2, meta, "c")] == [("m@1", Via.BCT), ("m@2", Via.DIRECT)]
    assert [r.vector for r in write_routes(V1, meta, "c")] == ["m@1"]  # the old model cannot fill m@2: not asked to
    meta.edges = []
    with pytest.raises(IncompatibleModelError, match=r"takes new points in 'm@1' \(m@1\); m@2 has no route there"):
        write_routes(V2, meta, "c")


def test_the_cutover_guard_refuses_a_write_that_cannot_fill_the_target_and_lets_one_that_can():
    meta = _meta(("m@1", V1, VectorState.ACTIVE), ("m@2", V2, VectorState.FILLING), edges=[_edge(criterion_met=True)])
    meta.job = _job(Phase.CUTTING_OVER)
    with pytest.raises(IncompatibleModelError, match="is cutting over to 'm@2' \\(m@2\\); m@1 cannot write that vector"):
        write_routes(V1, meta, "c")
    assert {r.vector for r in write_routes(V2, meta, "c")} == {"m@1", "m@2"}
    meta.job = _job(Phase.RUNNING)
    assert [r.vector for r in write_routes(V1, meta, "c")] == ["m@1"]  # outside the window the old model writes


def test_only_the_model_being_cut_over_to_waits_for_a_blue_green_switch():
    meta = _meta(("m@1", V1, VectorState.ACTIVE))
    meta.job = _job(Phase.CUTTING_OVER, Layout.BLUE_GREEN, green="c-green")
    assert awaits_switch(V2, meta, "c")
    assert not awaits_switch(V1, meta, "c")  # another model is refused, not held back
    assert not awaits_switch(V2, meta, "c-green")  # already the new collection
    meta.job = _job(Phase.CUTTING_OVER)  # in place: nothing to switch to
    assert not awaits_switch(V2, meta, "c")
    meta.job = _job(Phase.RUNNING, Layout.BLUE_GREEN, green="c-green")
    assert not awaits_switch(V2, meta, "c")


def test_a_blue_green_mirror_takes_the_write_under_its_own_metadata_both_checked_first():
    blue = _meta(("m@1", V1, VectorState.ACTIVE))
    blue.mirror = "c-green"
    green = _meta(("m@1", V1, VectorState.ACTIVE), ("m@2", V2, VectorState.FILLING))
    plan = plan_write(V1, "c", blue, name="live", mirror_meta=green)
    assert [(t.collection, [r.vector for r in t.routes]) for t in plan] == [("c", ["m@1"]), ("c-green", ["m@1"])]
    with pytest.raises(ValueError, match="mirrors into 'c-green'"):
        plan_write(V1, "c", blue)
    green.write = ["m@2"]  # green switched its writes: the old model cannot write there, and nothing is written
    with pytest.raises(IncompatibleModelError, match="collection 'c-green' takes new points in 'm@2'"):
        plan_write(V1, "c", blue, mirror_meta=green)
    blue.mirror = None
    assert [t.collection for t in plan_write(V1, "c", blue)] == ["c"]
