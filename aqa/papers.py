"""The published numbers: every reference row the Compare page and ``aqa compare`` show.

A row is data, never recomputed: the benchmark, the method, the **protocol** the number was
obtained under (with or without difficulty / dive number, which exemplars, which apparatus), ρ
and RL2 (x100, as the papers print it), **where it comes from** (``source``: the paper and its
table, a repository file, an issue thread) and **how sure we are of it** (``provenance``):

    paper           read in the paper (or its official abstract / results listing)
    paper (recalled) the paper's table as recalled, not re-read against the PDF: treat as approximate
    repo figure     a results table shipped as an image in a public repository, read by eye
    repo log        a training log shipped in the official repository
    reproduction    a third party re-running the official code
    public issue    a third party re-running the official code, reported in an issue thread
                    (``GAPS``: the known public reproduction gaps, beside the paper's rows)

Where sources disagree (FineDiving's TSA numbers are listed under opposite protocols by
different sources), every version is a row of its own, never merged, each with its source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

AQA7_CLASSES = ("Diving", "Vault", "Ski", "Snowb.", "Sync3m", "Sync10m")
RG_APPARATUS = ("Ball", "Clubs", "Hoop", "Ribbon")

BENCHMARKS = {  # key -> (display name, split the numbers are on)
    "mtl_aqa": ("MTL-AQA", "test split, 353 dives"),
    "aqa7": ("AQA-7", "split 4; Avg. = Fisher-z mean of the six classes"),
    "finediving": ("FineDiving", "test split, 749 dives"),
    "fisv": ("Fis-V", "test split, 100 programs"),
    "rg": ("Rhythmic Gymnastics", "test split per apparatus"),
}


@dataclass(frozen=True)
class PaperRow:
    benchmark: str
    method: str
    protocol: str
    rho: float | None
    rl2x100: float | None
    source: str
    provenance: str
    per_class: dict = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


CORE_PAPER = "CoRe (Yu et al., ICCV 2021), MTL-AQA results table"
FD_PAPER = "FineDiving (Xu et al., CVPR 2022), FineDiving results table"
HP_MCORE_FIG = "Lumos0507/HP-MCoRe, asset/results.png (results table image)"
RICA2_FIG = "abrarmajeedi/rica2_aqa, assets/results_fig.png (results table image)"
GDLT_PAPER = "GDLT (Xu et al., CVPR 2022)"

ROWS: tuple[PaperRow, ...] = (
    # ------------------------------------------------------------------ MTL-AQA
    PaperRow("mtl_aqa", "C3D-AVG-MTL (Parmar & Morris 2019)", "final score, no DD", 0.9044, None,
             "What and How Well You Performed? (Parmar & Morris, CVPR 2019); results listing",
             "paper"),
    PaperRow("mtl_aqa", "USDL", "w/o DD", 0.9066, 0.654, CORE_PAPER, "paper (recalled)",
             note="the official repository's log reaches 0.9064"),
    PaperRow("mtl_aqa", "MUSDL", "w/ DD", 0.9273, 0.451, CORE_PAPER, "paper (recalled)",
             note="the official repository's log reaches 0.9306"),
    PaperRow("mtl_aqa", "I3D+MLP", "w/o DD", 0.9196, 0.443, CORE_PAPER, "paper (recalled)"),
    PaperRow("mtl_aqa", "I3D+MLP", "w/ DD", 0.9381, 0.394, CORE_PAPER, "paper"),
    PaperRow("mtl_aqa", "CoRe", "w/o DD", 0.9341, 0.365, CORE_PAPER, "paper"),
    PaperRow("mtl_aqa", "CoRe", "w/ DD", 0.9512, 0.260, CORE_PAPER, "paper (recalled)"),
    PaperRow("mtl_aqa", "TSA-Net (USDL head + TSA)", "w/ DD", 0.9393, None,
             "TSA-Net (Wang et al., ACM MM 2021), abstract", "paper"),
    PaperRow("mtl_aqa", "TPT", "w/ DD", 0.9607, 0.238,
             "TPT (Bai et al., ECCV 2022), MTL-AQA results table", "paper",
             note="RL2 recalled; a single-GPU reproduction reached 0.9581 (baiyang4/aqa_tpt #1)"),
    # ------------------------------------------------------------------ AQA-7 (per class)
    PaperRow("aqa7", "USDL", "per class, no DD", 0.8102, None,
             "USDL (Tang et al., CVPR 2020), AQA-7 table", "paper (recalled)",
             dict(zip(AQA7_CLASSES, (0.8099, 0.7570, 0.6538, 0.7109, 0.9166, 0.8878)))),
    PaperRow("aqa7", "I3D+MLP", "per class, no DD", 0.7601, 3.20,
             "CoRe (Yu et al., ICCV 2021), AQA-7 table", "paper",
             dict(zip(AQA7_CLASSES, (0.8685, 0.6939, 0.5391, 0.5180, 0.8782, 0.8486)))),
    PaperRow("aqa7", "CoRe", "per class, no DD", 0.8401, 2.12,
             "CoRe (Yu et al., ICCV 2021), AQA-7 table", "paper",
             dict(zip(AQA7_CLASSES, (0.8824, 0.7746, 0.7115, 0.6624, 0.9442, 0.9078))),
             note="the Fisher-z mean of the per-class values is 0.8433, not the printed 0.8401"),
    PaperRow("aqa7", "TSA-Net", "per class, no DD", 0.8476, None,
             "TSA-Net (Wang et al., ACM MM 2021), abstract and AQA-7 table", "paper",
             dict(zip(AQA7_CLASSES, (0.8379, 0.8004, 0.6657, 0.6962, 0.9493, 0.9334)))),
    PaperRow("aqa7", "TPT", "per class, no DD", 0.8715, None,
             "TPT (Bai et al., ECCV 2022), AQA-7 table", "paper (recalled)",
             dict(zip(AQA7_CLASSES, (0.8969, 0.8043, 0.7336, 0.6965, 0.9456, 0.9545))),
             note="the Fisher-z mean of the per-class values is 0.8714"),
    # ------------------------------------------------------------------ FineDiving
    # The FineDiving paper's table as recalled: TSA 0.9203 without dive number, 0.9324 with.
    PaperRow("finediving", "USDL", "without dive number", 0.8302, 0.5927, FD_PAPER,
             "paper (recalled)"),
    PaperRow("finediving", "MUSDL", "without dive number", 0.8427, 0.5733, FD_PAPER,
             "paper (recalled)"),
    PaperRow("finediving", "CoRe", "without dive number", 0.9061, 0.3615, FD_PAPER,
             "paper (recalled)"),
    PaperRow("finediving", "TSA (FineDiving)", "without dive number", 0.9203, 0.3420, FD_PAPER,
             "paper (recalled)", note="two later repositories list 0.9203 / 0.342 *with* dive "
             "number: see their rows"),
    PaperRow("finediving", "USDL", "with dive number", 0.8913, 0.3822, FD_PAPER,
             "paper (recalled)"),
    PaperRow("finediving", "MUSDL", "with dive number", 0.9241, 0.3474, FD_PAPER,
             "paper (recalled)"),
    PaperRow("finediving", "CoRe", "with dive number", 0.9308, 0.3148, FD_PAPER,
             "paper (recalled)"),
    PaperRow("finediving", "TSA (FineDiving)", "with dive number", 0.9324, 0.3022, FD_PAPER,
             "paper (recalled)", note="the official test code chooses exemplars by the "
             "query's ground-truth dive number"),
    PaperRow("finediving", "TSA (FineDiving)", "with dive number", 0.9203, 0.342, HP_MCORE_FIG,
             "repo figure", note="also abrarmajeedi/rica2_aqa, assets/results_fig.png"),
    PaperRow("finediving", "TSA (FineDiving)", "without dive number", 0.8925, 0.478, RICA2_FIG,
             "repo figure", note="also Lumos0507/HP-MCoRe, asset/results.png"),
    PaperRow("finediving", "TSA (FineDiving)", "with dive number (official code)", 0.9043, None,
             "xujinglin/FineDiving issue #8 (a user re-running the official code)",
             "reproduction", note="the known reproduction gap"),
    PaperRow("finediving", "TSA (FineDiving)", "official code", 0.9272, 0.3313,
             "a third-party course project re-running the official code (web page)",
             "reproduction"),
    PaperRow("finediving", "TPT", "as reported by later papers", 0.9333, None,
             "results listing of TPT on FineDiving", "paper"),
    # ------------------------------------------------------------------ long programs
    PaperRow("fisv", "GDLT", "TES, VST features", 0.685, None,
             f"{GDLT_PAPER}, Fis-V table", "paper (recalled)"),
    PaperRow("fisv", "GDLT", "PCS, VST features", 0.820, None,
             f"{GDLT_PAPER}, Fis-V table", "paper (recalled)"),
    PaperRow("rg", "GDLT", "Ball, total score, VST features", 0.746, None,
             f"{GDLT_PAPER}, Rhythmic Gymnastics table", "paper (recalled)"),
    PaperRow("rg", "GDLT", "Clubs, total score, VST features", 0.802, None,
             f"{GDLT_PAPER}, Rhythmic Gymnastics table", "paper (recalled)"),
    PaperRow("rg", "GDLT", "Hoop, total score, VST features", 0.765, None,
             f"{GDLT_PAPER}, Rhythmic Gymnastics table", "paper (recalled)"),
    PaperRow("rg", "GDLT", "Ribbon, total score, VST features", 0.741, None,
             f"{GDLT_PAPER}, Rhythmic Gymnastics table", "paper (recalled)"),
    PaperRow("rg", "CoFInAl", "Ball, total score, VST features, best test epoch", 0.8087, None,
             "ZhouKanglei/CoFInAl_AQA @fe1f4c1, temp_log/RG/VST/cofinal/"
             "train_log-cofinal-Ball.txt", "repo log",
             note="best test ρ at epoch 123 (chosen on the test set); the last epoch logs 0.775"),
)


# ---------------------------------------------------------------- known reproduction gaps
# What third parties re-running the official code reported in public issue threads, written only
# as far as the thread says it (a number the thread does not give is None).

@dataclass(frozen=True)
class ReproductionGap:
    benchmark: str
    method: str                 # as in the paper rows (PaperRow.method)
    protocol: str
    reproduced_rho: float | None  # what the thread reports; None: no number in the thread's text
    paper_rho: float | None     # the paper's number as the thread states it; None: not stated
    setup: str                  # what was run, as the thread says
    reported: str               # what the thread reports, in short
    source: str                 # the repository, issue number and comment
    rl2x100: float | None = None  # the reported RL2, x100 (printed unscaled by the official code)
    provenance: str = "public issue"

    def as_dict(self) -> dict:
        return asdict(self)


TPT_ISSUE = "baiyang4/aqa_tpt issue #1"
GAPS: tuple[ReproductionGap, ...] = (
    ReproductionGap("mtl_aqa", "TPT", "w/ DD", 0.9581, 0.9607,
                    "official code, one RTX 3090, batch size 2",
                    "0.9581, slightly below the 0.9607 of the paper",
                    f"{TPT_ISSUE} (comment of 2023-05-25)"),
    ReproductionGap("mtl_aqa", "TPT", "w/ DD", None, None,
                    "official code, two RTX 3090, batch size 2",
                    "only about 0.5 (no exact number given)",
                    f"{TPT_ISSUE} (comment of 2023-12-14)"),
    ReproductionGap("aqa7", "TPT", "per class, no DD", None, None,
                    "official code on AQA-7, several runs",
                    "could not reach the paper's AQA-7 values; no numbers given",
                    f"{TPT_ISSUE} (the issue's description, 2023-01-17)"),
    ReproductionGap("finediving", "TSA (FineDiving)", "official code", 0.904310, None,
                    "official code with the repository's FineDiving_TSA.yaml, trained and tested",
                    "correlation 0.904310, L2 45.539504, RL2 0.004178 (unscaled), "
                    "tIoU_5 0.722296, tIoU_75 0.257677: lower than the paper's result",
                    "xujinglin/FineDiving issue #8 (the issue's description, 2022-11-16)",
                    rl2x100=0.4178),
    ReproductionGap("aqa7", "CoRe", "per class, no DD", None, None,
                    "official code on AQA-7 with exactly the paper's settings",
                    "results a bit lower than the paper's (the table is an image: no number in "
                    "the text); a later comment notes the code does not seed PyTorch",
                    "yuxumin/CoRe issue #3 (the issue's description, 2022-07-25)"),
)


def gaps(benchmark: str | None = None, method: str | None = None) -> list[ReproductionGap]:
    """The known public reproduction gaps of ``benchmark`` (and ``method``), in table order."""
    return [g for g in GAPS if (benchmark is None or g.benchmark == benchmark)
            and (method is None or g.method == method)]


def rows(benchmark: str | None = None) -> list[PaperRow]:
    """The reference rows of ``benchmark`` (all when None), in table order."""
    return [r for r in ROWS if benchmark is None or r.benchmark == benchmark]


def benchmark_of(dataset: str) -> str | None:
    """Which benchmark a dataset name belongs to (a key of :data:`BENCHMARKS`), or None."""
    key = dataset.lower().replace("-", "").replace("_", "").replace(" ", "")
    if "mtl" in key:
        return "mtl_aqa"
    if "aqa7" in key:
        return "aqa7"
    if "finediving" in key:
        return "finediving"
    if key in ("fisv", "figureskating"):
        return "fisv"
    if key in ("rg", "rhythmicgymnastics"):
        return "rg"
    return None
