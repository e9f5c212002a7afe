"""`cruijff tiny-model DIR`: the offline test model (needs the [train] extra)."""

import click


@click.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
def tiny_model(out_dir: str, seed: int) -> None:
    """Build a tiny random Llama and its tokenizer in OUT_DIR (no download)."""
    from cruijff.tiny import build_tiny_llama

    click.echo(build_tiny_llama(out_dir, seed=seed))
