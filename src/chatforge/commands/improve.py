"""Improve a run from the feedback its users gave: export it, train on it, and keep the result only if it is
not worse.

Takes the feedback on RUN's answers since RUN was made (kept by `chatforge serve` and `chatforge chat`),
trains DPO when there are preference pairs (picks, arena votes, corrections), KTO when there are only
thumbs, starting from RUN, with an SFT loss on the chosen answers; holds out a share of the feedback; evaluates
the new run against RUN on it (and on RUN's own held-out set when its config names one), and prints the
verdict with 95% confidence intervals. Exit 1 when the new run is worse than RUN on a headline metric beyond
the noise (a regression gate for scripts and CI; the new run is deleted), or when there is too little
feedback (it says how much more is needed). Otherwise the new run is RUN-2 (or --out).

Example:  chatforge improve runs/lumora            # -> runs/lumora-2, or exit 1 with the reason
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.improve import ImproveConfig
from chatforge.store.config import LogConfig


def add_arguments(parser):
    parser.add_argument("run", metavar="RUN", help="The training run to improve (runs/NAME).")
    add_config_arguments(parser, ImproveConfig)
    add_config_arguments(parser, LogConfig, exclude=("log",))


def run(args) -> int:
    import dataclasses

    from chatforge.config import build
    from chatforge.improve import improve

    cfg = dataclasses.replace(build(ImproveConfig, args), run=args.run)
    view = View()
    try:
        with build(LogConfig, args).open_existing() as store:
            verdict = improve(cfg, store, on_event=view)
    finally:
        view.close()
    for check in verdict.checks:
        lo, hi = check["ci"]
        mark = "WORSE" if check["worse"] else "ok"
        print(f"  {check['set']:<24} {check['metric']:<20} {check['value']:+.3f}  95% CI [{lo:+.3f}, {hi:+.3f}]  "
              f"{mark}")
    for note in verdict.notes:
        print(f"  note: {note}")
    if not verdict.ok:
        where = "; ".join(f"{c['set']} ({c['metric']})" for c in verdict.checks if c["worse"])
        print(f"verdict: the new run is worse than {args.run} beyond the noise on {where}; it was not kept")
        return 1
    print(f"verdict: not worse; the improved run is {verdict.out}")
    return 0


class View:
    """improve's events: its own messages (what it trains) on stdout, where its verdict follows; training's
    progress bar (train.callbacks.ProgressBar) and the evaluations' lines and progress on stderr
    (chatforge.events.ConsoleView)."""

    def __init__(self):
        from chatforge.events import ConsoleView
        from chatforge.train.callbacks import ProgressBar

        self.console, self.bar = ConsoleView(), ProgressBar()

    def __call__(self, event) -> None:
        if event.stage == "improve":
            print(f"chatforge improve: {event.message}", flush=True)
        elif event.stage == "train":
            self.bar(event)
        else:
            self.console(event)

    def close(self) -> None:
        self.bar.close()
        self.console.close()
