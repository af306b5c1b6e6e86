"""Time difference of arrival between two microphones, in MARVELO's job style.

Two microphones hear one broadband source; the second hears it DELAY samples later. Each
microphone is a source job (on its own worker, by its group), and a third job estimates the
delay of every frame by GCC-PHAT: the phase transform of the cross-spectrum, whose inverse peaks
at the delay. A sink writes one delay per frame; the end-to-end test checks it is DELAY.
"""
import numpy as np

from fission.core.jobs import PythonJob


def source_signal(seed, samples):
    """The broadband source both microphones hear: white noise, the same on every worker."""
    return np.random.default_rng(seed).standard_normal(samples)


class Microphone(PythonJob):
    """Frames of one microphone: the source signal, delayed by `delay` samples, plus its own
    noise at `snr_db`."""

    def __init__(self, mic, delay=0, frames=20, frame=4096, seed=7, snr_db=10.0, outputs=None, **kwargs):
        super().__init__(outputs=outputs, **kwargs)
        self.mic, self.delay, self.frames, self.frame = mic, delay, frames, frame
        self.seed, self.snr_db = seed, snr_db

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        total = self.frames * self.frame
        s = source_signal(self.seed, total + self.max_delay())
        # The first microphone hears s[n + max_delay]; one delayed by d hears s[n + max_delay - d].
        start = self.max_delay() - self.delay
        noise = np.random.default_rng(self.seed + 1000 * self.mic).standard_normal(total)
        self.signal = s[start:start + total] + noise * 10 ** (-self.snr_db / 20)

    def max_delay(self):
        return 256

    def run(self):
        for k in range(self.frames):
            if k == self.frames - 1:
                self.finish()
            yield self.signal[k * self.frame:(k + 1) * self.frame]


class GccPhat(PythonJob):
    """The delay, in samples, of the second input against the first (positive: it hears later)."""

    def __init__(self, max_delay=256, **kwargs):
        super().__init__(**kwargs)
        self.max_delay = max_delay

    def run(self, first, second):
        n = len(first) + len(second)
        spectrum = np.fft.rfft(second, n) * np.conj(np.fft.rfft(first, n))
        spectrum /= np.abs(spectrum) + 1e-12
        cc = np.fft.irfft(spectrum, n)
        m = self.max_delay
        cc = np.concatenate((cc[-m:], cc[:m + 1]))
        delay = int(np.argmax(np.abs(cc))) - m
        print(f"{self.id}: frame delay {delay} samples")
        return delay
