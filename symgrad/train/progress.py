"""Training progress on stderr: a tqdm bar when tqdm is installed, a plain bar otherwise, nothing off a terminal."""

import sys
import time


def progress_bar(epochs, per_epoch, stream=None, quiet=False):
    """The progress reporter of a training run: silent with quiet or when stream is not a terminal."""
    stream = sys.stderr if stream is None else stream
    if quiet or not getattr(stream, "isatty", lambda: False)():
        return Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return Progress(epochs, per_epoch, stream)
    return TqdmProgress(tqdm, epochs, per_epoch, stream)


class Silent:
    """A progress reporter that reports nothing."""

    def update(self, epoch, it, running):
        pass

    def end_epoch(self, epoch, loss, val_loss=None):
        pass

    def close(self):
        pass


class TqdmProgress:
    """One tqdm bar over every batch of the run: rate, ETA, the epoch, and the running loss as postfix."""

    def __init__(self, tqdm, epochs, per_epoch, stream):
        self.epochs, self.val = epochs, ""
        self.bar = tqdm(total=epochs * per_epoch, file=stream, unit="batch", dynamic_ncols=True, mininterval=0.1,
                        desc=self._desc(1))

    def _desc(self, epoch):
        return f"epoch {epoch}/{self.epochs}"

    def update(self, epoch, it, running):
        self.bar.set_postfix_str(f"loss {running:.4g}{self.val}", refresh=False)
        self.bar.update(1)

    def end_epoch(self, epoch, loss, val_loss=None):
        self.bar.set_description_str(self._desc(epoch), refresh=False)
        self.val = "" if val_loss is None else f", val {val_loss:.4g}"
        self.bar.set_postfix_str(f"loss {loss:.4g}{self.val}", refresh=False)
        if epoch == self.epochs:
            self.bar.refresh()
        else:
            self.bar.set_description_str(self._desc(epoch + 1), refresh=False)

    def close(self):
        self.bar.close()


class Progress:
    """A plain-text progress bar with the running loss, redrawn in place (for terminals without tqdm)."""

    def __init__(self, epochs, per_epoch, stream, width=24):
        self.epochs, self.per_epoch, self.width, self.stream = epochs, per_epoch, width, stream
        self.last, self.drawn = 0.0, False

    def update(self, epoch, it, running):
        if it < self.per_epoch and time.monotonic() - self.last < 0.1:
            return
        self.last = time.monotonic()
        self._draw(self._line(epoch, it, f"loss {running:.6g}"))

    def end_epoch(self, epoch, loss, val_loss=None):
        self._draw(self._line(epoch, self.per_epoch, f"loss {loss:.6g}" + ("" if val_loss is None else f" val {val_loss:.6g}")))

    def close(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, line):
        self.stream.write("\r" + line)
        self.stream.flush()
        self.drawn = True

    def _line(self, epoch, it, loss):
        done = self.width * it // self.per_epoch
        return (f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs} [{'#' * done}{'.' * (self.width - done)}] "
                f"{it}/{self.per_epoch} {loss}")
