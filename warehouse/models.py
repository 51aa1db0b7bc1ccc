"""The warehouse schema as SQLAlchemy 2.0 typed models (migrations create it; this is the reference)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    SmallInteger,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from warehouse.summaries import (
    EARLY_COLUMNS,
    MOMENT_FLOATS,
    MOMENT_SUMS,
    SAMPLE_MOMENT_FLOATS,
    SAMPLE_MOMENTS,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# duckdb_engine has no SERIAL: run ids come from this sequence.
RUN_ID_SEQ = Sequence("runs_run_id_seq", start=1)
SERVED_ID_SEQ = Sequence("served_requests_request_id_seq", start=1)


# Table info: the export writes the table as hive partitions of this column (the large per-run tables).
EXPORT_PARTITION = "export_partition"
PARTITIONED_BY_RUN = {"info": {EXPORT_PARTITION: "run_id"}}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Model(Base):
    """A language model that took part in a run; params are counted from its loaded weights."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    params: Mapped[int] = mapped_column(BigInteger)
    architecture: Mapped[str | None] = mapped_column(Text)
    vocab_size: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    source: Mapped[str | None] = mapped_column(Text)  # the GGUF file or draft recipe of the weights
    quantization: Mapped[str | None] = mapped_column(Text)  # "Q4_1", "rtn4 g32"; NULL: as trained


# Column info of a `runs` column that says how a run went, not what it is: analytics does not group or
# filter by it.
NOT_A_GROUPING = {"group_by": False}


class Run(Base):
    """One (LLM, SLM[, tuned SLM], method, router, dataset, decoding settings) over a set of samples."""

    __tablename__ = "runs"

    run_id: Mapped[int] = mapped_column(
        BigInteger, RUN_ID_SEQ, primary_key=True, server_default=RUN_ID_SEQ.next_value()
    )
    # The collector names a run before it can reach the database (it may be locked by a reader).
    run_key: Mapped[str] = mapped_column(Text)  # unique: the single writer checks before inserting
    created_at: Mapped[datetime] = mapped_column(DateTime, info=NOT_A_GROUPING)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, info=NOT_A_GROUPING)
    llm: Mapped[str] = mapped_column(Text)
    slm: Mapped[str] = mapped_column(Text)
    slm_tuned: Mapped[str | None] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    router: Mapped[str] = mapped_column(Text)
    threshold: Mapped[float | None] = mapped_column(Double)
    dataset: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    n_samples: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    temperature: Mapped[float] = mapped_column(Double)
    top_p: Mapped[float] = mapped_column(Double)
    device: Mapped[str] = mapped_column(Text)
    dtype: Mapped[str] = mapped_column(Text)
    settings: Mapped[str] = mapped_column(Text, info=NOT_A_GROUPING)  # JSON of every decoding setting
    wall_s: Mapped[float | None] = mapped_column(Double, info=NOT_A_GROUPING)
    tokens_per_s: Mapped[float | None] = mapped_column(Double, info=NOT_A_GROUPING)
    # why a `failed` run failed, with what to do
    error: Mapped[str | None] = mapped_column(Text, info=NOT_A_GROUPING)
    # The named set of runs it belongs to (`--experiment`, a sweep's name); analyses read one at a time.
    experiment: Mapped[str] = mapped_column(Text, server_default="default")
    # Hashes of the settings that define the run (collector.config.run_identity): runs pool only when
    # equal in all of them; `setup` leaves out the pair's models (the runs of one scaling fit).
    identity: Mapped[str | None] = mapped_column(Text)
    setup: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text, server_default="[]", info=NOT_A_GROUPING)  # JSON list of text
    # Kept, but out of every analysis until included again (`python -m warehouse runs exclude|include`).
    excluded: Mapped[bool] = mapped_column(Boolean, server_default=false(), info=NOT_A_GROUPING)


class Sample(Base):
    """One prompt of one run and what the collaboration wrote for it."""

    __tablename__ = "samples"
    __table_args__ = PARTITIONED_BY_RUN
    # No constraints: DuckDB cannot alter a table with indexes; the ingest ledger keeps it idempotent.
    __mapper_args__ = {"primary_key": ["run_id", "sample_id"]}

    run_id: Mapped[int] = mapped_column(BigInteger)
    sample_id: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    n_tokens: Mapped[int] = mapped_column(Integer, doc="generated tokens")
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    stop_reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    correct: Mapped[bool | None] = mapped_column(Boolean)


class TokenEvent(Base):
    """One generated token of one sample of one run (see DESIGN.md §2 for the vocabulary)."""

    __tablename__ = "token_events"
    __table_args__ = PARTITIONED_BY_RUN
    __mapper_args__ = {"primary_key": ["run_id", "sample_id", "step"]}

    run_id: Mapped[int] = mapped_column(BigInteger)
    sample_id: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    rel_pos: Mapped[float] = mapped_column(Float, doc="step / n_tokens of the sample, in [0, 1)")
    token_id: Mapped[int] = mapped_column(Integer)
    s1_token_id: Mapped[int] = mapped_column(Integer)
    s1_prob: Mapped[float] = mapped_column(Float)
    s1_entropy: Mapped[float] = mapped_column(Float)
    s1_margin: Mapped[float] = mapped_column(Float)
    s2_token_id: Mapped[int] = mapped_column(Integer)
    llm_token_id: Mapped[int] = mapped_column(Integer)
    llm_prob: Mapped[float] = mapped_column(Float)
    llm_entropy: Mapped[float] = mapped_column(Float)
    llm_prob_s1_token: Mapped[float] = mapped_column(Float)
    consulted: Mapped[bool] = mapped_column(Boolean)
    mismatch: Mapped[bool] = mapped_column(Boolean)
    draft_index: Mapped[int | None] = mapped_column(
        SmallInteger,
        doc="speculative decoding only (else null): position in the draft 0..K-1, K for the LLM's own token",
    )
    accepted: Mapped[bool | None] = mapped_column(
        Boolean, doc="speculative decoding only (else null): a draft token the LLM kept"
    )
    accept_prob: Mapped[float | None] = mapped_column(
        Float,
        doc="Σ_v min(p_s(v), p_l(v)) of both models' sampling distributions (temperature 1 under greedy): "
        "P(accept) of a drawn draft under speculative sampling",
    )


class SpecCycle(Base):
    """One draft/verify round of speculative decoding: K drafted tokens, how many the LLM kept."""

    __tablename__ = "spec_cycles"
    __table_args__ = PARTITIONED_BY_RUN
    __mapper_args__ = {"primary_key": ["run_id", "sample_id", "cycle"]}

    run_id: Mapped[int] = mapped_column(BigInteger)
    sample_id: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)  # 0, 1, ... within the sample
    drafted: Mapped[int] = mapped_column(SmallInteger)
    accepted: Mapped[int] = mapped_column(SmallInteger)


class RunCost(Base):
    """A cost of a run on its device: the pair's calibration (timed once per pair, device and dtype, then
    copied by later runs) or the run's own decode, paired baseline and calibration seconds."""

    __tablename__ = "run_costs"
    __mapper_args__ = {"primary_key": ["run_id", "kind", "tokens", "batch_size"]}

    run_id: Mapped[int] = mapped_column(BigInteger)
    # s1_forward | s2_forward | cycle | stop_cycle | prefill | llm_generate | decode | baseline | calibration
    kind: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)  # new tokens per forward, drafts per cycle, or generated
    batch_size: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Double)  # per forward, cycle or prompt; in all for generate/decode
    # run_key of the run whose calibration measured this cost; NULL: this run measured it
    measured_by: Mapped[str | None] = mapped_column(Text)


class IngestedShard(Base):
    """Ledger of staged shards already in the warehouse: ingesting a shard twice changes nothing."""

    __tablename__ = "ingested_shards"

    shard: Mapped[str] = mapped_column(Text, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)
    samples: Mapped[int] = mapped_column(Integer)
    ingested_at: Mapped[datetime] = mapped_column(DateTime)


# Summary tables (warehouse/summaries.py): sums of token_events that ingest adds to in each shard's
# transaction; the views and analytics read them instead of scanning the events.


class RunSum(Base):
    """Tokens, consultations and mismatches of one run."""

    __tablename__ = "run_sums"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tokens: Mapped[int] = mapped_column(BigInteger)
    consulted: Mapped[int] = mapped_column(BigInteger)
    mismatches: Mapped[int] = mapped_column(BigInteger)


class SampleSum(Base):
    """Tokens, consultations and mismatches of one sample (per-sample CoF and its interval)."""

    __tablename__ = "sample_sums"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sample_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    consulted: Mapped[int] = mapped_column(BigInteger)
    mismatches: Mapped[int] = mapped_column(BigInteger)


# Its tokens and mismatches in each early window the early-share test reads (one definition: the windows of
# warehouse.summaries), added by migration 0012 with 0 as the default.
for _column in EARLY_COLUMNS:
    setattr(SampleSum, _column, mapped_column(BigInteger, nullable=False, server_default="0"))


class PositionSum(Base):
    """Tokens and mismatches of one run in one relative-position decile (bin 0..9)."""

    __tablename__ = "position_sums"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    mismatches: Mapped[int] = mapped_column(BigInteger)


class EntropySum(Base):
    """Tokens and mismatches of one run in one System 1 entropy bin (0.5 nats; the last open above)."""

    __tablename__ = "entropy_sums"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    mismatches: Mapped[int] = mapped_column(BigInteger)


class HistogramSum(Base):
    """Tokens and mismatches of one run per cell of a feature's grid (predictor ranks, early windows)."""

    __tablename__ = "histogram_sums"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    feature: Mapped[str] = mapped_column(Text, primary_key=True)
    cell: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    mismatches: Mapped[int] = mapped_column(BigInteger)


class HistogramPack(Base):
    """One run's `histogram_sums` rows of one predictor, packed: cells lo.. as big-endian (tokens,
    mismatches) pairs of `width` bytes each (warehouse.summaries; migration 0013)."""

    __tablename__ = "histogram_packs"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    feature: Mapped[str] = mapped_column(Text, primary_key=True)
    lo: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(SmallInteger)
    counts: Mapped[bytes] = mapped_column(LargeBinary)


class RouterSum(Base):
    """Tokens and replay mismatches (s2_token_id ≠ s1_token_id) of one run per cell of a router's grid."""

    __tablename__ = "router_sums"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    router: Mapped[str] = mapped_column(Text, primary_key=True)
    cell: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    replay_mismatches: Mapped[int] = mapped_column(BigInteger)


class StepSum(Base):
    """Tokens and mismatches of one sample at one of its first steps, per rel_pos cell of that step."""

    __tablename__ = "step_sums"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sample_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    mismatches: Mapped[int] = mapped_column(BigInteger)


class WindowMoment(Base):
    """The early-share test's sums over one run's samples for one early window (warehouse/summaries.py:
    samples; tokens n, mismatches m and those in the window e, em; the product of each two, `n_m` = Σ n·m;
    d = em − m·e/n and d²)."""

    __tablename__ = "window_moments"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    window_name: Mapped[str] = mapped_column(Text, primary_key=True)


# Its sums (one definition: warehouse.summaries), integers but d and d².
for _column in MOMENT_SUMS:
    _type = Double if _column in MOMENT_FLOATS else BigInteger
    setattr(WindowMoment, _column, mapped_column(_type, nullable=False))


class SampleMoment(Base):
    """CoF's interval sums over one run's samples (warehouse/summaries.py: samples; tokens n, consulted and
    mismatches m; Σ m², Σ m·n, Σ n²; Σ r and Σ r² of each sample's CoF r = m / n)."""

    __tablename__ = "sample_moments"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


for _column in SAMPLE_MOMENTS:
    _type = Double if _column in SAMPLE_MOMENT_FLOATS else BigInteger
    setattr(SampleMoment, _column, mapped_column(_type, nullable=False))


# Serving traces in (`python -m warehouse import vllm|sglang|trtllm FILE`, warehouse/serving.py).


class ServedRequest(Base):
    """One request a serving engine answered with speculative decoding, imported from its saved response."""

    __tablename__ = "served_requests"

    request_id: Mapped[int] = mapped_column(
        BigInteger, SERVED_ID_SEQ, primary_key=True, server_default=SERVED_ID_SEQ.next_value()
    )
    import_id: Mapped[int] = mapped_column(BigInteger)  # one `import` command's requests
    import_key: Mapped[str] = mapped_column(Text)  # SHA-256 of engine + line: a re-import adds nothing
    engine: Mapped[str] = mapped_column(Text)  # vllm | sglang | trtllm
    model: Mapped[str] = mapped_column(Text)  # the LLM, named as the warehouse names it
    draft: Mapped[str] = mapped_column(Text)
    k: Mapped[int | None] = mapped_column(Integer)  # drafts per verify step, where fixed
    drafted: Mapped[int] = mapped_column(BigInteger)
    accepted: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int | None] = mapped_column(BigInteger)  # verify steps
    completion_tokens: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text)  # the imported file
    line: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(DateTime)


class ServedHistogram(Base):
    """Verify steps of one served request that accepted exactly `accepted` drafts."""

    __tablename__ = "served_histogram"

    request_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    accepted: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    steps: Mapped[int] = mapped_column(BigInteger)


class ServedStep(Base):
    """One verify step of a served request (engines that report them: vLLM `detailed`)."""

    __tablename__ = "served_steps"

    request_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    drafted: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
