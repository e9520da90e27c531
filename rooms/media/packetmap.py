"""Per-leg RTP numbering: contiguous sequence numbers and a continuous timeline.

A subscriber leg keeps one SSRC for as long as it exists, while what feeds it changes:
the server stops forwarding (a host mutes someone, a subscriber turns video off), the
publisher reconnects with a fresh SSRC and fresh random numbering, or forwarding
resumes. A receiver that saw a jump in sequence numbers would NACK the whole gap and a
jump in timestamps would stall its jitter buffer, so each leg maps the source's
numbering onto its own with an offset that is re-based at every discontinuity.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


@dataclass(slots=True)
class PacketMap:
    """Maps one source's (sequence, timestamp) onto a leg's numbering."""

    clock_rate: int
    seq_offset: int = 0
    ts_offset: int = 0
    source: int | None = None  # SSRC currently mapped
    last_seq: int | None = None  # last sequence number sent on the leg
    last_ts: int = 0
    last_sent_at: float = 0.0  # monotonic seconds
    highest_in: int | None = None  # highest source sequence seen since the last rebase
    gated: bool = False  # forwarding was stopped; the next packet re-bases

    def map(self, ssrc: int, sequence: int, timestamp: int, now: float) -> tuple[int, int]:
        """The leg's (sequence, timestamp) for a source packet that will be sent now.

        Forwarder.on_rtp inlines the in-order case (same source, not gated, newer than
        anything seen) and calls this for the rest; tests/unit/test_media_forward.py
        checks that both always agree.
        """
        if ssrc != self.source or self.last_seq is None:
            self._rebase(ssrc, sequence, timestamp, now, new_source=True)
        elif self.gated:
            self._rebase(ssrc, sequence, timestamp, now, new_source=False)
        out_seq = (sequence + self.seq_offset) % SEQ_MOD
        out_ts = (timestamp + self.ts_offset) % TS_MOD
        if self.highest_in is None or _newer(sequence, self.highest_in):
            self.highest_in = sequence
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_sent_at = now
        return out_seq, out_ts

    def gate(self) -> None:
        """Forwarding stops here; when it resumes the numbering continues without a gap."""
        self.gated = True

    def source_sequence(self, leg_sequence: int) -> int | None:
        """The source sequence number behind a leg's sequence number (for NACKs)."""
        if self.last_seq is None:
            return None
        return (leg_sequence - self.seq_offset) % SEQ_MOD

    def _rebase(
        self, ssrc: int, sequence: int, timestamp: int, now: float, *, new_source: bool
    ) -> None:
        if self.last_seq is None:
            self.seq_offset = 0
            self.ts_offset = 0
        else:
            self.seq_offset = (self.last_seq + 1 - sequence) % SEQ_MOD
            if new_source:
                # A new source has an unrelated random timestamp base: continue the
                # leg's timeline by the wall-clock time that passed (at least one tick).
                elapsed = max(1, round((now - self.last_sent_at) * self.clock_rate))
                self.ts_offset = (self.last_ts + elapsed - timestamp) % TS_MOD
        self.source = ssrc
        self.highest_in = None
        self.gated = False


def _newer(a: int, b: int) -> bool:
    """RFC 1982 serial-number comparison for 16-bit sequence numbers."""
    return a != b and ((a - b) % SEQ_MOD) < SEQ_MOD // 2
