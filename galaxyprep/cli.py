"""The `galaxyprep` command: thin typer wrappers over the package's functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .builder import BuildConfig
from .errors import InputError
from .interrupts import Terminated, interrupts_unmasked, sigterm_interrupts
from .recipes import DATA_RECIPES
from .version import __version__

# Plain help (no rich markup, which ate every "[default: ...]"), wide enough for the option texts.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"max_content_width": 120},
                  help="Preprocess the Kaggle Galaxy Zoo images into one chunked HDF5 file.")

_BUILD = BuildConfig(images=Path("."), out=Path("."))  # the build's defaults, stated once, in BuildConfig


def _version(value: bool) -> None:
    if value:
        typer.echo(f"galaxyprep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Preprocess the Kaggle Galaxy Zoo images into one chunked HDF5 file."""


@app.command()
def build(
    images: Path = typer.Option(..., "--images", help="Folder or zip of <GalaxyID>.jpg (e.g. "
                                                      "images_training_rev1.zip)."),
    out: Path = typer.Option(..., "--out", help="HDF5 file to write (written as OUT.partial, renamed when "
                                                "complete)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="training_solutions_rev1.csv or its zip; omit "
                                                                 "for a test set."),
    recipe: Optional[str] = typer.Option(None, "--recipe", metavar="|".join(sorted(DATA_RECIPES)),
                                         help=f"Take --crop and --size from a galaxytrain recipe "
                                              f"({', '.join(sorted(DATA_RECIPES))})."),
    crop: Optional[int] = typer.Option(None, "--crop", help=f"Centre crop in original pixels. [default: the "
                                                            f"recipe's, else {_BUILD.crop}]"),
    size: Optional[int] = typer.Option(None, "--size", help=f"Output side in pixels (area-averaged from the "
                                                            f"crop). [default: the recipe's, else {_BUILD.size}]"),
    workers: Optional[int] = typer.Option(None, "--decode-workers", "--workers",
                                          help="Decode workers: forked processes on Linux, threads elsewhere. "
                                               "[default: all cores]"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N galaxies by GalaxyID."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="File of GalaxyIDs (one per line) to build, nothing "
                                                           "else."),
    split: Optional[str] = typer.Option(None, "--split", metavar="train|holdout",
                                        help="Build one side of a split by GalaxyID hash: the same galaxies "
                                             "every time, whatever else is in the folder; build both sides "
                                             "for a training file and a labelled holdout for score. [default: "
                                             "no split]"),
    holdout_fraction: float = typer.Option(_BUILD.holdout_fraction, "--holdout-fraction", show_default=True,
                                           help="--split: the holdout's share of the galaxies."),
    split_seed: int = typer.Option(_BUILD.split_seed, "--split-seed", show_default=True,
                                   help="--split: the hash's seed (the default is bench/bench_vgg6_real.py's)."),
    on_error: str = typer.Option(_BUILD.on_error, "--on-error", show_default=True, metavar="skip|fail",
                                 help="skip: leave bad images out and list them; fail: stop, write nothing."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted build of the same input."),
    compression: str = typer.Option(_BUILD.compression, "--compression", show_default=True,
                                    metavar="none|lzf|gzip",
                                    help="none | lzf | gzip (see README: none reads fastest)."),
    chunk_images: Optional[int] = typer.Option(None, "--chunk-images", help="Images per HDF5 chunk. [default: "
                                                                            "about 1 MiB]"),
    batch_size: int = typer.Option(_BUILD.batch_size, "--batch-size", show_default=True,
                                   help="Images per decode/resample batch."),
    dct_scaling: bool = typer.Option(_BUILD.dct_scaling, "--dct-scaling/--no-dct-scaling", show_default=True,
                                     help="Decode at reduced scale in the DCT domain."),
    direct_io: bool = typer.Option(_BUILD.direct_io, "--direct-io/--no-direct-io", show_default=True,
                                   help="Write pixels with O_DIRECT (past the page cache) where the file system "
                                        "allows."),
    crop_decode: bool = typer.Option(_BUILD.crop_decode, "--crop-decode/--no-crop-decode", show_default=True,
                                     help="Decode only the centre window (galaxyprep's C decoder, where it was "
                                          "built); the pixels are the full-frame decode's."),
    progress: bool = typer.Option(True, "--progress/--no-progress", show_default=True,
                                  help="A live bar on a terminal, a line every few seconds in a log."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="The same as --no-progress."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out that is not a galaxyprep "
                                                              "file."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="local|tcp://HOST:PORT",
                                            help="Build on a Dask cluster: 'local' (a LocalCluster of this "
                                                 "machine's cores, --decode-workers threads of this process) or "
                                                 "a scheduler's "
                                                 "address, tcp://HOST:PORT. Shards go to OUT.parts/, on storage "
                                                 "every worker sees. [default: no cluster]"),
    shard_images: Optional[int] = typer.Option(None, "--shard-images",
                                               help="Most images per shard file of a cluster build; shards are "
                                                    "cut within a chunk of each other. [default: from the number "
                                                    "of images, 1,024 to 65,536; always whole chunks]"),
    consolidate: bool = typer.Option(_BUILD.consolidate, "--consolidate/--virtual", show_default=True,
                                     help="Cluster build: copy the shards into one plain OUT, or leave OUT as "
                                          "virtual datasets over OUT.parts/."),
) -> None:
    """Build a chunked HDF5 training (with --labels) or test set from the Kaggle JPEGs."""
    from .api import build_config
    from .builder import build as run_build
    from .progress import Progress

    config = build_config(images, out, labels, recipe=recipe, crop=crop, size=size, workers=workers, limit=limit,
                          ids_file=ids, on_error=on_error, resume=resume, compression=compression,
                          chunk_images=chunk_images, batch_size=batch_size, dct_scaling=dct_scaling,
                          direct_io=direct_io, overwrite=overwrite, crop_decode=crop_decode, scheduler=scheduler,
                          shard_images=shard_images, consolidate=consolidate, split=split,
                          holdout_fraction=holdout_fraction, split_seed=split_seed)
    meter: list[Progress] = []

    def advance(done: int, total: int) -> None:
        if not meter:
            meter.append(Progress(total, "build"))
        meter[0].update(done)

    def report(line: str) -> None:
        typer.echo(f"skipped: {line}", err=True)  # above the bar: rich keeps the bar at the bottom

    try:
        with interrupts_unmasked():  # an interrupt that h5py reported as SystemError is still the interrupt
            summary = run_build(config, progress=advance if progress and not quiet else None, report=report)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (sigterm_interrupts)
        terminated = isinstance(exc, Terminated)
        typer.echo(("terminated (SIGTERM)" if terminated else "interrupted") + ": what was written is kept; the "
                   "same command with --resume continues it", err=True)
        raise typer.Exit(143 if terminated else 130) from None
    finally:
        if meter:
            meter[0].close()
    for line in summary.lines():
        typer.echo(line)


@app.command()
def info(path: Path = typer.Argument(..., help="A file written by galaxyprep build.")) -> None:
    """What a file holds and how it was built."""
    from . import read_info

    i = read_info(path)
    mb = (path.stat().st_size + sum(Path(p).stat().st_size for p in i.parts)) / 1e6
    typer.echo(f"{i.path}: {i.n_images:,} images {i.size}x{i.size}x3 uint8 from a {i.crop}px centre crop, "
               f"{'with' if i.has_labels else 'without'} labels, {mb:,.1f} MB")
    if i.parts:
        typer.echo(f"  virtual: its rows are in {len(i.parts)} shard file(s) in {Path(i.parts[0]).parent}")
    typer.echo(f"  chunks: {i.chunk_images} images; compression: {i.compression or 'none'}")
    typer.echo(f"  source: {i.source}" + (f"; labels: {i.labels_source}" if i.has_labels else ""))
    if i.label_schema is not None:
        typer.echo(f"  label columns: {i.label_schema.describe()}")
    typer.echo(f"  mean (R, G, B): {', '.join(f'{v:.3f}' for v in i.mean)}")
    typer.echo(f"  std  (R, G, B): {', '.join(f'{v:.3f}' for v in i.std)}")
    typer.echo(f"  a reader applies: {i.normalization}")
    typer.echo(f"  decoder: {i.decoder or '?'}; plan: {i.decode_plan}")
    typer.echo(f"  built by galaxyprep {i.galaxyprep_version or '?'} with: "
               + " ".join(f"{k}={v}" for k, v in i.build_params.items()))
    left = [f"{n:,} {what}" for n, what in ((i.images_without_labels, "image(s) without a label row"),
                                            (i.labels_without_images, "label row(s) without an image")) if n]
    if left:
        typer.echo(f"  not built: {'; '.join(left)}")
    typer.echo(f"  skipped at build: {len(i.skipped)}")
    for item in i.skipped[:10]:
        typer.echo(f"    {item['file']}: {item['problem']}")
    if len(i.skipped) > 10:
        typer.echo(f"    ... and {len(i.skipped) - 10} more (attribute 'skipped')")


@app.command()
def preview(
    path: Path = typer.Argument(..., help="A file written by galaxyprep build."),
    out: Path = typer.Option(Path("preview.png"), "--out", help="PNG to write."),
    n: int = typer.Option(8, "--n", help="How many galaxies."),
    seed: int = typer.Option(0, "--seed", help="Which galaxies (a random sample)."),
) -> None:
    """A PNG grid: each original JPEG (crop box drawn) next to what the network sees."""
    from .preview import preview as run_preview

    typer.echo(f"wrote {run_preview(path, out, n=n, seed=seed)}")


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder for the Kaggle layout (images_training_rev1/, training_solutions_rev1.csv)."),
    n: int = typer.Option(2000, "--n", help="Labelled training galaxies."),
    n_test: int = typer.Option(0, "--n-test", help="Unlabelled test galaxies (images_test_rev1/)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Threads [default: all cores]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the images and labels already in OUT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line."),
) -> None:
    """Synthetic SDSS-like galaxies with tree-consistent labels: the embedded default data."""
    from .progress import Progress
    from .synth import synthesize

    meter = None if quiet else Progress(n + n_test, "synth")
    try:
        result = synthesize(out, n, n_test=n_test, seed=seed, workers=workers, overwrite=overwrite,
                            progress=None if meter is None else meter.update)
    except ValueError as exc:
        raise InputError("galaxyprep synth", str(exc)) from None
    if meter:
        meter.close()
    typer.echo(f"wrote {result.n_train:,} training and {result.n_test:,} test galaxies to {result.out_dir} "
               f"in {result.seconds:.1f} s")


def main(argv: list[str] | None = None) -> None:
    """Entry point: input problems become one `error:` line and exit code 1.

    Typer handles usage errors itself (standalone mode); everything else
    propagates as the bug it is.
    """
    try:
        with sigterm_interrupts():  # SIGTERM unwinds as Ctrl-C does (the build command says what is kept)
            app(args=argv, prog_name="galaxyprep")
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
