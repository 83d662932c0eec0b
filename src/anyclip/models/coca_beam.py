"""Beam search for CoCa captions with open_clip 3.3.0's semantics (transformers' ``BeamSearchScorer``).

Beam scores are sums of raw decoder logits; each step takes the ``2 * beams`` best continuations per
sentence in rank order: an end token ranked within the beam width closes a hypothesis (scored
``score / length``, kept among the best ``beams``), other tokens fill the next beams. A sentence is done
when no open beam can beat its worst kept hypothesis; at the end the open beams join the kept ones and the
best wins. open_clip's beam groups have no diversity penalty, so they are identical copies of one search:
it is run once, with ``num_beams // num_beam_groups`` beams.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from .coca_cache import image_context, make_stepper, process_logits


def beam_search(model, images, prompt, seed, opts):
    """``(ids [batch, seq_len], width)``: each image's best caption, valid in ``ids[:, :width]``.

    Called by :func:`anyclip.models.coca_generate.generate` (which checks ``opts``); ``prompt`` and
    ``seed`` are unused (beam search starts from the start token and draws nothing).
    """
    del prompt, seed
    k, size, eos, pad = opts["group"], opts["seq_len"], opts["eos"], opts["pad"]
    batch = ops.shape(images)[0]
    rows = batch * k
    stepper = make_stepper(model, image_context(model, images, k), rows, opts, slide=False)
    buf = ops.concatenate([ops.full((rows, 1), opts["sot"], "int32"), ops.full((rows, size - 1), pad, "int32")], 1)
    scores = ops.tile(ops.where(ops.arange(k) == 0, 0.0, -1e9), (batch,))
    hyps = _Hyps.empty(batch, k, size, pad)
    first_row = ops.arange(batch, dtype="int32")[:, None] * k  # [batch, 1]

    def body(buf, scores, done, n, hyp_state, cache):
        hyps = _Hyps(*hyp_state)
        x = buf[:, :opts["window"]]
        logits, cache = stepper.step(cache, buf, n)
        logits = process_logits(logits, x, n, opts)
        vocab = logits.shape[-1]
        total = ops.reshape(logits + scores[:, None], (batch, k * vocab))
        top_scores, top_ids = ops.top_k(total, 2 * k)
        top_ids = ops.cast(top_ids, "int32")
        source, token = top_ids // vocab, top_ids % vocab
        # transformers' BeamSearchScorer.process, for all sentences at once, candidates in rank order
        filled = ops.zeros((batch,), "int32")
        next_scores, next_tokens = ops.zeros((batch, k)), ops.full((batch, k), pad, "int32")
        next_rows = first_row + ops.arange(k, dtype="int32")[None]  # finished sentences keep their rows
        for rank in range(2 * k):
            open_ = ops.logical_and(filled < k, ops.logical_not(done))
            is_eos = token[:, rank] == eos
            row = first_row[:, 0] + source[:, rank]
            if rank < k:  # an end token ranked below the beam width is ignored
                add = ops.logical_and(open_, is_eos)
                hyps = hyps.add(add, ops.take(buf, row, axis=0), n, top_scores[:, rank] / ops.cast(n + 1, "float32"))
            take = ops.logical_and(open_, ops.logical_not(is_eos))
            slot = ops.logical_and(filled[:, None] == ops.arange(k, dtype="int32")[None], take[:, None])
            next_scores = ops.where(slot, top_scores[:, rank:rank + 1], next_scores)
            next_tokens = ops.where(slot, token[:, rank:rank + 1], next_tokens)
            next_rows = ops.where(slot, row[:, None], next_rows)
            filled = filled + ops.cast(take, "int32")
        best_possible = top_scores[:, 0] / ops.cast(n + 1, "float32")
        done = ops.logical_or(done, ops.logical_and(hyps.count >= k, hyps.worst >= best_possible))
        rows_taken = ops.reshape(next_rows, (-1,))
        buf = ops.slice_update(ops.take(buf, rows_taken, axis=0), (0, n), ops.reshape(next_tokens, (-1, 1)))
        n = n + 1
        stop = ops.logical_or(ops.all(done), n >= size)
        return buf, ops.reshape(next_scores, (-1,)), done, n, hyps.state, stepper.reorder(cache, rows_taken), stop

    def loop_body(buf, scores, done, n, hyp_state, cache, stop):
        return body(buf, scores, done, n, hyp_state, cache)

    state = (buf, scores, ops.zeros((batch,), "bool"), ops.convert_to_tensor(1, "int32"), hyps.state,
             stepper.init(), ops.convert_to_tensor(False))
    buf, scores, done, n, hyp_state, _, _ = ops.while_loop(lambda *s: ops.logical_not(s[-1]), loop_body, state)
    # BeamSearchScorer.finalize: open beams of unfinished sentences join the kept hypotheses, the best one wins
    hyps = _Hyps(*hyp_state)
    open_ = ops.logical_not(done)
    for b in range(k):
        row = first_row[:, 0] + b
        hyps = hyps.add(open_, ops.take(buf, row, axis=0), n, ops.take(scores, row) / ops.cast(n, "float32"))
    return hyps.best(size, eos, pad)


class _Hyps:
    """transformers' BeamHypotheses for every sentence: up to ``k`` finished sequences and their scores."""

    def __init__(self, tokens, lengths, scores, order, count, worst, clock):
        self.tokens, self.lengths, self.scores, self.order = tokens, lengths, scores, order
        self.count, self.worst, self.clock = count, worst, clock

    @classmethod
    def empty(cls, batch, k, size, pad):
        return cls(ops.full((batch, k, size), pad, "int32"), ops.zeros((batch, k), "int32"),
                   ops.zeros((batch, k)), ops.zeros((batch, k), "int32"), ops.zeros((batch,), "int32"),
                   ops.full((batch,), 1e9), ops.convert_to_tensor(0, "int32"))

    @property
    def state(self):
        return (self.tokens, self.lengths, self.scores, self.order, self.count, self.worst, self.clock)

    def add(self, mask, tokens, length, score):
        """``BeamHypotheses.add`` where ``mask``: keep ``tokens[:, :length]`` if there is room or it beats the worst."""
        k = self.scores.shape[1]
        full = self.count >= k
        keep = ops.logical_and(mask, ops.logical_or(ops.logical_not(full), score > self.worst))
        # when full, the lowest score goes (the earliest added among equal ones)
        lowest = ops.min(self.scores, axis=1, keepdims=True)
        oldest = ops.where(self.scores == lowest, self.order, np.iinfo(np.int32).max)
        slot = ops.where(full, ops.cast(ops.argmin(oldest, axis=1), "int32"), self.count)
        put = ops.logical_and(slot[:, None] == ops.arange(k, dtype="int32")[None], keep[:, None])
        new_scores = ops.where(put, score[:, None], self.scores)
        worst = ops.where(full, ops.min(new_scores, axis=1), ops.minimum(score, self.worst))
        return _Hyps(ops.where(put[:, :, None], tokens[:, None, :], self.tokens),
                     ops.where(put, length, self.lengths), new_scores, ops.where(put, self.clock, self.order),
                     self.count + ops.cast(ops.logical_and(keep, ops.logical_not(full)), "int32"),
                     ops.where(keep, worst, self.worst), self.clock + 1)

    def best(self, size, eos, pad):
        """``(ids [batch, size], width)``: each sentence's best hypothesis + end token, padded to the longest."""
        k = self.scores.shape[1]
        valid = ops.arange(k, dtype="int32")[None] < self.count[:, None]
        scores = ops.where(valid, self.scores, -np.inf)
        top = ops.max(scores, axis=1, keepdims=True)
        latest = ops.where(ops.logical_and(valid, scores == top), self.order, -1)
        pick = ops.cast(ops.argmax(latest, axis=1), "int32")
        tokens = ops.take_along_axis(self.tokens, pick[:, None, None], axis=1)[:, 0]
        length = ops.take_along_axis(self.lengths, pick[:, None], axis=1)[:, 0]
        width = ops.minimum(ops.max(length) + 1, size)
        pos = ops.arange(size, dtype="int32")[None]
        out = ops.where(pos < length[:, None], tokens, pad)
        out = ops.where(ops.logical_and(pos == length[:, None], pos < width), eos, out)
        return out, width
