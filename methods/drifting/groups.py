"""How unconditional drifting's groups sit on the processes of a run (DESIGN.md section 9: groups are
defined by the global batch, never by a process's share).

The global batch of ``train.batch_size`` samples is split into consecutive groups of ``group_size``
(default: one group, the whole batch, as in the toy notebook). Rank r holds global rows
``[r * b, (r + 1) * b)``. When every group lies inside one rank's rows, each rank computes its own
groups. When a group spans ranks, every rank gathers the global batch (detached; for the toys a few
thousand 2-D points), computes the drift of every group exactly as one process would, and keeps the
gradient of its own rows only. Every loss here regresses generated samples onto stop-gradient targets,
so the gradient of a row depends on the other rows only through those constant targets and the
batch-wide scales, all of which the gathered batch reproduces; ``global_mean`` then scales the gradient
by the world size so that DDP's average over ranks gives one process's gradient, and the loss value is
the global batch's, the same number one process logs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from methods.harness.dist import gather_rows


def check_groups(group_size: int | None, local_batch: int, world: int = 1) -> None:
    """One line when the groups do not tile the global batch."""
    total = local_batch * world
    g = group_size or total
    if g < 2 or total % g:
        what = "null (the whole batch)" if group_size is None else str(group_size)
        raise ValueError(f"method.group_size={what} must be >= 2 and divide train.batch_size={total}")


def spans_ranks(group_size: int | None, local_batch: int, world: int) -> bool:
    """Whether some group holds rows of several processes (then the batch is gathered)."""
    return world > 1 and local_batch % (group_size or local_batch * world) != 0


def global_batch(gen: Tensor, pos: Tensor, rows: range) -> tuple[Tensor, Tensor]:
    """The global batch on this rank: every rank's rows, this rank's generated rows (``rows`` of the
    global batch) still carrying their gradient, the others constant."""
    every = gather_rows(gen)
    live = torch.cat([every[:rows.start], gen, every[rows.stop:]])
    return live, gather_rows(pos)


def global_mean(loss: Tensor, world: int) -> Tensor:
    """The global batch's loss, with a gradient ``world`` times larger: each rank back-propagates only
    through its own rows, and DDP averages the ranks' gradients."""
    return loss.detach() + world * (loss - loss.detach())
