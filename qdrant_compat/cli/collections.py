"""``collection create|info|list|adopt|alias``, ``index`` and ``search``."""

from __future__ import annotations

import json

import click

from qdrant_compat.cli.context import CliState, pass_state


@click.group("collection")
def collection_group() -> None:
    """Versioned collections."""


@collection_group.command("create")
@click.argument("name")
@click.option("--model", required=True, help="NAME@VERSION of the model whose vectors it will hold.")
@click.option("--exist-ok", is_flag=True, help="Succeed if NAME already holds this model's vector.")
@pass_state
def create(state: CliState, name: str, model: str, exist_ok: bool) -> None:
    """Create collection NAME with one named vector for the --model version."""
    state.may_create_store = True
    meta = state.client.create_collection(name, model, exist_ok=exist_ok)
    state.emit({"collection": name, "metadata": meta.to_dict()}, f"collection '{name}' holds {model} in vector '{meta.read}'")


@collection_group.command("adopt")
@click.argument("name")
@click.option("--model", required=True, help="NAME@VERSION that made the existing vectors.")
@click.option("--vector", "vector_name", default=None, help="Which named vector ('' for the unnamed one).")
@click.option("--verify", type=click.IntRange(min=0), default=0, show_default=True,
              help="Re-embed N sampled points' images and compare with the stored vectors first (refused below a "
                   "median cosine of 0.99).")
@click.option("--image-field", default="image_path", show_default=True, help="Payload field naming each point's image.")
@click.option("--force", is_flag=True, help="Adopt even when --verify finds the vectors are not this model's.")
@pass_state
def adopt(state: CliState, name: str, model: str, vector_name: str | None, verify: int, image_field: str,
          force: bool) -> None:
    """Declare which model made the vectors of a collection created without qdrant-compat (no point is touched)."""
    from qdrant_compat.adoption import adopt as adopt_collection

    rep = adopt_collection(state.client, name, model, vector_name=vector_name, verify=verify, force=force,
                           image_field=image_field)
    v = rep.verify
    state.emit(rep, f"collection '{name}': vector '{rep.metadata.read}' = {model}" + (
        f" (verified on {v.compared} of {v.sampled} randomly sampled points (seed {v.seed}): median cosine "
        f"{v.median_cosine:.4f}, min {v.min_cosine:.4f}"
        + (", FORCED below 0.99" if not v.passed else "") + ")" if v else ""))


@collection_group.command("alias")
@click.argument("alias")
@click.argument("collection")
@pass_state
def alias_cmd(state: CliState, alias: str, collection: str) -> None:
    """Point ALIAS at COLLECTION (created, or moved in one request). Applications that query the alias can be
    switched by a blue-green upgrade; Qdrant cannot rename a collection they query by its own name."""
    from qdrant_compat.errors import InvalidArgumentError
    from qdrant_compat.store import check_collection_name

    store = state.client.store
    check_collection_name(alias)
    store.info(collection)  # names the collections that exist when it does not
    if store.exists(alias) and alias not in store.aliases():
        raise InvalidArgumentError(f"'{alias}' is a collection, not an alias; choose another alias name")
    if collection in store.aliases():
        raise InvalidArgumentError(f"'{collection}' is an alias; point '{alias}' at a collection")
    before = store.aliases().get(alias)
    store.point_alias(alias, collection)
    state.emit({"alias": alias, "collection": collection, "previous": before},
               f"alias '{alias}' -> '{collection}'" + (f" (was '{before}')" if before else ""))


@collection_group.command("info")
@click.argument("name")
@pass_state
def info(state: CliState, name: str) -> None:
    """Models, named vectors, fill counts, edges and jobs of collection NAME."""
    d = state.client.info(name)

    def human() -> str:
        lines = [f"collection '{name}': {d.points} points; queries read '{d.read}', writes go to {d.write}"]
        for v, e in d.vectors.items():
            lines.append(f"  vector '{v}': {e.model} ({e.fingerprint[:12]}…) dim {e.dim} {e.distance} "
                         f"{e.state}, {e.points}/{d.points} points")
        for edge in d.edges:
            lines.append(f"  edge {edge.query} -> {edge.stored} ({edge.relation}): {json.dumps(edge.evidence)}")
        if d.job is not None:
            lines.append(f"  job: {json.dumps(d.job.to_dict())}")
        return "\n".join(lines)

    state.emit(d, human)


@collection_group.command("list")
@pass_state
def list_collections(state: CliState) -> None:
    """All collections, and which are managed by qdrant-compat."""
    rows = state.client.list_collections()
    state.emit(rows, lambda: "\n".join(
        f"{r.name:<24} {'managed: ' + ', '.join(r.models) if r.managed else 'not managed'}" for r in rows)
        or "no collections")


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--collection", required=True, help="Collection to write (created if absent).")
@click.option("--model", required=True, help="NAME@VERSION to embed with.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images embedded per ONNX Runtime call.")
@click.option("--read-workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Threads reading and preprocessing images while the model embeds (0: one step after another).")
@pass_state
def index(state: CliState, folder: str, collection: str, model: str, batch_size: int, read_workers: int) -> None:
    """Embed an image folder (root/<class>/<image>) into COLLECTION (created if missing)."""
    state.may_create_store = True
    from qdrant_compat.data.images import ImageFolder
    from qdrant_compat.indexing import index_folder

    n_total = len(ImageFolder(folder))
    with state.progress("indexing", n_total) as bar:
        skipped: list[str] = []
        n = index_folder(state.client, collection, model, folder, batch_size=batch_size, progress=bar, skipped=skipped,
                         read_workers=read_workers)
    state.emit({"collection": collection, "model": model, "indexed": n, "skipped": skipped},
               f"indexed {n} images into '{collection}' with {model}"
               + (f"; skipped {len(skipped)} unreadable: {skipped[0]}" + (" ..." if len(skipped) > 1 else "") if skipped else ""))


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", required=True, help="Collection (or alias) to search.")
@click.option("--model", required=True, help="NAME@VERSION that embeds the query image.")
@click.option("--limit", "-k", type=click.IntRange(min=1, max=10_000), default=5, show_default=True,
              help="Number of hits.")
@pass_state
def search(state: CliState, image: str, collection: str, model: str, limit: int) -> None:
    """Search COLLECTION with an IMAGE file; prints the top-k hits with their payloads."""
    from qdrant_compat.client import user_payload
    from qdrant_compat.indexing import search_image

    hits = search_image(state.client, collection, model, image, limit=limit)
    rows = [{"id": str(h.id), "score": h.score, "payload": user_payload(h.payload)} for h in hits]
    state.emit(rows, lambda: "\n".join(
        f"{i + 1:>2}. {r['score']:.4f}  {r['payload'].get('class', '')}  {r['payload'].get('image_path', r['id'])}"
        for i, r in enumerate(rows)) or "no hits")


