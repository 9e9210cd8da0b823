"""python -m manifests.demo --out data/demo --clips 96 [--seed 0] [--force]"""
import click

from .corpus import generate


@click.command()
@click.option("--out", default="data/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--clips", "n_clips", default=96, show_default=True, type=click.IntRange(4))
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace a demo corpus already in --out.")
def main(out, n_clips, seed, force):
    """Write the synthetic demo corpus in the MER 2023 release layout."""
    path = generate(out, n_clips, seed, force)
    click.echo(f"demo corpus: {path} ({n_clips} clips, seed {seed}; synthetic speech and face)")


if __name__ == "__main__":
    main()
