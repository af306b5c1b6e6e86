"""python -m marvelo.runner end to end, as a subprocess fed and drained through os.pipe()s."""

import os
import struct
import sys
import tempfile
import unittest

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS)

from runner_helpers import (decode_blocks, encode_blocks, job_spec, pipe_spec, read_exactly, run,  # noqa: E402
                            start)

try:
    import numpy as np
except ImportError:
    np = None

CBOR = pipe_spec(1)


def values(result, k=0, pipe=None, head_size=1, arrays=False):
    return [v for _, v in decode_blocks(pipe or pipe_spec(9), result.outputs[k], head_size, arrays)]


def heads(result, k=0, pipe=None, head_size=1):
    return [h for h, _ in decode_blocks(pipe or pipe_spec(9), result.outputs[k], head_size)]


class RoundsTest(unittest.TestCase):
    def test_forward_of_every_kind_of_value(self):
        vals = [1, -1, 2 ** 70, 1.5, 0.1, "text", b"raw", [1, [2]], {"a": None}, True, None]
        res = run(job_spec("fixture_jobs:Forward", [CBOR], [pipe_spec(2)]), [encode_blocks(CBOR, vals)])
        self.assertEqual(res.rc, 0, res)
        got = decode_blocks(pipe_spec(2), res.outputs[0])
        # None is "nothing this round": a skip, bit 0 set, with the zero frame
        self.assertEqual([v for _, v in got], vals)
        self.assertEqual([h for h, _ in got], [0] * 10 + [0x80])

    def test_constructor_args(self):
        res = run(job_spec("fixture_jobs:Scale", [CBOR], [pipe_spec(2)], args={"factor": 3}),
                  [encode_blocks(CBOR, [1, 2])])
        self.assertEqual(values(res), [3, 6])

    def test_json_pipes(self):
        j = pipe_spec(1, "json")
        res = run(job_spec("fixture_jobs:Scale", [j], [pipe_spec(2, "json")], args={"factor": 2}),
                  [encode_blocks(j, [1, 2.5, [1, 2]])])
        self.assertEqual(values(res, pipe=pipe_spec(2, "json")), [2, 5.0, [1, 2, 1, 2]])

    def test_two_inputs_and_the_seed_pages_tuple_rules(self):
        a, b = pipe_spec(1), pipe_spec(2)
        res = run(job_spec("fixture_jobs:StarJob", [a, b, pipe_spec(3)], [pipe_spec(4), pipe_spec(5), pipe_spec(6)]),
                  [encode_blocks(a, ["*", "+"]), encode_blocks(b, [1, 2]), encode_blocks(b, [10, 20])])
        self.assertEqual(res.rc, 0, res)
        self.assertEqual([values(res, k) for k in range(3)], [[11, 22], [11, 22], ["*", "+"]])

    def test_connector_with_a_block_count_input(self):
        p = pipe_spec(1, block_count=3)
        res = run(job_spec("fixture_jobs:BlockSum", [p], [pipe_spec(2), pipe_spec(3)]),
                  [encode_blocks(p, [1, 2, 3, 4, 5, 6], per_round=3)])
        self.assertEqual(res.rc, 0, res)
        self.assertEqual((values(res, 0), values(res, 1)), ([6, 15], [3, 3]))

    def test_none_skips_every_output_with_the_zero_frame(self):
        res = run(job_spec("fixture_jobs:SkipOdd", [CBOR], [pipe_spec(2), pipe_spec(3, "json")]),
                  [encode_blocks(CBOR, [1, 2, 3, 4])])
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.outputs[0], b"\x80\xf6\x00\x02\x80\xf6\x00\x04")
        self.assertEqual(res.outputs[1], b"\x80null\n\x002\n\x80null\n\x004\n")

    def test_skips_per_output(self):
        res = run(job_spec("fixture_jobs:SkipFirstOutput", [CBOR], [pipe_spec(2), pipe_spec(3)]),
                  [encode_blocks(CBOR, [1, 2, 3])])
        self.assertEqual([heads(res, 0), heads(res, 1)], [[0x80, 0, 0], [0, 0x80, 0]])

    def test_finish_in_a_connector_ends_after_the_round(self):
        res = run(job_spec("fixture_jobs:FinishAt", [CBOR], [pipe_spec(2)], args={"at": 2}),
                  [encode_blocks(CBOR, [1, 2, 3, 4])])
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(decode_blocks(CBOR, res.outputs[0]), [(0, 1), (0x20, 2)])

    def test_end_ends_now_and_writes_nothing_for_the_round(self):
        res = run(job_spec("fixture_jobs:EndAt", [CBOR], [pipe_spec(2)], args={"at": 3}),
                  [encode_blocks(CBOR, [1, 2, 3, 4])])
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(values(res), [1, 2])

    def test_heads_of_size_1_and_2(self):
        for size, in_heads, want in ((1, [0x01, 0x80 | 0x02], [0x01 | 0x04, 0x02 | 0x04]),
                                     (2, [0x0101, 0x8000 | 0x0002], [0x0101 | 0x0400, 0x0002 | 0x0400])):
            with self.subTest(size=size):
                res = run(job_spec("fixture_jobs:HeadEcho", [CBOR], [pipe_spec(2)], head_size=size),
                          [encode_blocks(CBOR, [1, 2], head_size=size, heads=in_heads)])
                self.assertEqual(res.rc, 0, res)
                got = decode_blocks(CBOR, res.outputs[0], size)
                self.assertEqual([v for _, v in got], in_heads)  # self.head: bit 0 included
                self.assertEqual([h for h, _ in got], want)  # bit 0 cleared, user bit 5 set

    def test_head_sizes_3_and_4(self):
        for size in (3, 4):
            res = run(job_spec("fixture_jobs:FinishAt", [CBOR], [pipe_spec(2)], args={"at": 1}, head_size=size),
                      [encode_blocks(CBOR, [1], head_size=size, heads=[1])])
            self.assertEqual(decode_blocks(CBOR, res.outputs[0], size), [(1 | 1 << (8 * size - 3), 1)])

    def test_a_sink(self):
        res = run(job_spec("fixture_jobs:Printer", [CBOR], []), [encode_blocks(CBOR, [1, 2])])
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.stdout, "3 -> 1\n3 -> 2\n")

    def test_prints_go_to_stdout_never_into_the_data(self):
        res = run(job_spec("fixture_jobs:Printer", [CBOR], [pipe_spec(2)]), [encode_blocks(CBOR, ["a"])])
        self.assertEqual((res.stdout, values(res)), ("3 -> a\n", ["a"]))

    def test_pipe_objects_and_id_reach_the_job(self):
        res = run(job_spec("fixture_jobs:PipesSeen", [pipe_spec(11)], [pipe_spec(12, "json")]),
                  [encode_blocks(CBOR, [0])])
        self.assertEqual(values(res, pipe=pipe_spec(12, "json")), [[3, [11], ["json"]]])

    def test_our_fission_shim_wins_over_a_copy_in_the_import_root(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "fission", "core"))
            files = {"fission/__init__.py": "", "fission/core/__init__.py": "",
                     "fission/core/jobs.py": "raise ImportError('the original fission needs dispy')\n",
                     "myjobs.py": "from fission.core.jobs import PythonJob\n\n\nclass J(PythonJob):\n"
                                  "    def run(self, x):\n        return x + 1\n"}
            for name, text in files.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            res = run(job_spec("myjobs:J", [CBOR], [pipe_spec(2)]), [encode_blocks(CBOR, [1])], cwd=d)
        self.assertEqual((res.rc, values(res)), (0, [2]), res)

    def test_named_pipes_by_path(self):
        with tempfile.TemporaryDirectory() as d:
            fin, fout = os.path.join(d, "in"), os.path.join(d, "out")
            os.mkfifo(fin)
            os.mkfifo(fout)
            spec = job_spec("fixture_jobs:Forward", [CBOR], [pipe_spec(2)])
            import json
            import subprocess
            env = dict(os.environ, MARVELO_PYTHON_JOB=json.dumps(spec), PYTHONPATH=os.path.dirname(TESTS))
            proc = subprocess.Popen([sys.executable, "-m", "marvelo.runner", "-i", fin, "-o", fout], cwd=TESTS,
                                    env=env, stderr=subprocess.PIPE)
            w = os.open(fin, os.O_WRONLY)  # the runner opens its input first, then its output
            r = os.open(fout, os.O_RDONLY)
            os.write(w, encode_blocks(CBOR, [7, 8]))
            os.close(w)
            self.assertEqual(read_exactly(r, 4), b"\x00\x07\x00\x08")
            os.close(r)
            self.assertEqual(proc.wait(60), 0, proc.stderr.read())
            proc.stderr.close()


class SourceTest(unittest.TestCase):
    def test_source_with_two_outputs_numbers_them_alike(self):
        res = run(job_spec("fixture_jobs:CountTwo", [], [pipe_spec(1), pipe_spec(2)], args={"n": 200}))
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(values(res, 0), list(range(1, 201)))
        self.assertEqual(values(res, 1), list(range(200, 0, -1)))
        self.assertEqual(heads(res, 0), [0] * 199 + [0x20])
        self.assertEqual(heads(res, 1), [0] * 199 + [0x20])

    def test_plain_source_and_exhaustion(self):
        res = run(job_spec("fixture_jobs:CountPlain", [], [pipe_spec(1)]))
        self.assertEqual((res.rc, values(res), heads(res)), (0, [1, 2, 3, 4], [0, 0, 0, 0x20]))
        res = run(job_spec("fixture_jobs:Exhausting", [], [pipe_spec(1)]))
        self.assertEqual((res.rc, values(res), heads(res)), (0, [0, 1, 2], [0, 0, 0]))

    def test_fission_module_runs_unchanged(self):
        res = run(job_spec("fixture_fission_jobs:ReadSoundFile", [], [pipe_spec(1)], args={"soundFile": "abcde"}))
        self.assertEqual((res.rc, values(res)), (0, [5, 2, 3]), res)
        res = run(job_spec("fixture_fission_jobs:CountJob", [], [pipe_spec(1), pipe_spec(2)], args={"start": 5}))
        self.assertEqual((values(res, 0), values(res, 1)), ([5, 6, 7], [-5, -6, -7]), res)
        self.assertEqual(heads(res, 1), [0, 0, 0x20])


class BuffersTest(unittest.TestCase):
    def test_flush_before_block_answers_each_round_without_more_input(self):
        proc, ins, outs = start(job_spec("fixture_jobs:Scale", [CBOR], [pipe_spec(2)], args={"factor": 2}), 1, 1)
        try:
            for i in range(1, 6):
                os.write(ins[0], encode_blocks(CBOR, [i], first_sqn=i))
                self.assertEqual(read_exactly(outs[0], 2, timeout=30), bytes([0, 2 * i]))
        finally:
            os.close(ins[0])
            read_exactly_eof = os.read(outs[0], 10)
            os.close(outs[0])
            proc.communicate(timeout=60)
        self.assertEqual((proc.returncode, read_exactly_eof), (0, b""))

    def test_an_answer_goes_out_while_the_job_works_on_the_next_round_of_a_buffered_backlog(self):
        # 40 rounds arrive in one write, so the runner reads them all at once and never has to
        # wait for input; round 2 then waits until the test has read the answer to round 1.
        with tempfile.TemporaryDirectory() as tmp:
            fifo = os.path.join(tmp, "go")
            os.mkfifo(fifo)
            spec = job_spec("fixture_jobs:WaitAt", [CBOR], [pipe_spec(2)], args={"at": 2, "fifo": fifo})
            proc, ins, outs = start(spec, 1, 1)
            try:
                os.write(ins[0], encode_blocks(CBOR, list(range(1, 41))))
                os.close(ins[0])
                first = read_exactly(outs[0], 2, timeout=20)
                with open(fifo, "w") as f:
                    f.write("go")
                want = b"".join(encode_blocks(CBOR, [v])[8:] for v in range(2, 41))  # [head][frame] each
                rest = read_exactly(outs[0], len(want))
            except BaseException:
                proc.kill()  # it may wait on the fifo for ever
                raise
            finally:
                os.close(outs[0])
                proc.communicate(timeout=60)
            self.assertEqual((proc.returncode, first, rest), (0, bytes([0, 1]), want))

    def test_a_round_split_across_many_writes(self):
        proc, ins, outs = start(job_spec("fixture_jobs:Forward", [CBOR], [pipe_spec(2)]), 1, 1)
        data = encode_blocks(CBOR, ["x" * 1000])
        for k in range(0, len(data), 100):
            os.write(ins[0], data[k:k + 100])
        self.assertEqual(read_exactly(outs[0], len(data) - 8), data[8:])
        os.close(ins[0])
        os.close(outs[0])
        proc.communicate(timeout=60)

    @unittest.skipIf(np is None, "numpy is not importable")
    def test_numpy_arrays_of_100k_float64_through_cbor_exact(self):
        rng = np.random.default_rng(3)
        arrays = [rng.standard_normal(100000) for _ in range(3)]
        arrays[1][::7] = 0.5  # halves among the doubles, as Go encodes them
        res = run(job_spec("fixture_jobs:Doubler", [CBOR], [pipe_spec(2)], arrays="numpy"),
                  [encode_blocks(CBOR, arrays)])
        self.assertEqual(res.rc, 0, res)
        got = values(res, arrays=True)
        self.assertEqual(len(got), 3)
        for want, have in zip(arrays, got):
            self.assertEqual(have.dtype, np.float64)
            self.assertTrue(np.array_equal(want * 2, have))

    @unittest.skipIf(np is None, "numpy is not importable")
    def test_arrays_numpy_hands_out_ndarrays(self):
        res = run(job_spec("fixture_jobs:Describe", [CBOR], [pipe_spec(2)], arrays="numpy"),
                  [encode_blocks(CBOR, [[1, 2], [1.5, 2], ["a"]])])
        self.assertEqual(values(res), ["ndarray int64", "ndarray float64", "list "])

    @unittest.skipIf(np is None, "numpy is not importable")
    def test_bytes_with_dtype_arrive_as_writable_arrays(self):
        p = pipe_spec(1, "bytes", 4096, dtype="<f4")
        frames = [np.arange(1024, dtype="<f4") + i for i in range(3)]
        res = run(job_spec("fixture_jobs:InPlace", [p], [pipe_spec(2, "bytes", 4096, dtype="<f4")]),
                  [encode_blocks(p, frames)])
        self.assertEqual(res.rc, 0, res)
        got = values(res, pipe=p)
        self.assertTrue(all(np.array_equal(g, 2 * f) for g, f in zip(got, frames)))

    def test_4k_bytes_forward(self):
        p = pipe_spec(1, "bytes", 4096)
        frames = [bytes([i]) * 4096 for i in range(50)]
        res = run(job_spec("fixture_jobs:Forward", [p], [pipe_spec(2, "bytes", 4096)]), [encode_blocks(p, frames)])
        self.assertEqual((res.rc, values(res, pipe=p)), (0, frames))


class ErrorsTest(unittest.TestCase):
    def test_exception_in_run_names_job_sqn_and_the_users_code(self):
        res = run(job_spec("fixture_jobs:Divide", [CBOR], [pipe_spec(2)], name="Divider"),
                  [encode_blocks(CBOR, [5, 0, 1], first_sqn=16)])
        self.assertEqual(res.rc, 1, res)
        lines = res.stderr.strip().splitlines()
        self.assertEqual(lines[0], "job 3 (Divider): run failed at SQN 17: ZeroDivisionError: integer division or modulo by zero")
        self.assertIn("fixture_jobs.py", res.stderr)
        self.assertIn("return 10 // x", res.stderr)
        self.assertNotIn("runner.py", res.stderr)
        self.assertNotIn("engine.py", res.stderr)
        self.assertLessEqual(len(lines), 20)
        self.assertEqual(values(res), [2])  # the round before the failure was answered

    def test_source_failure_names_the_block(self):
        res = run(job_spec("fixture_jobs:FailingSource", [], [pipe_spec(1)]))
        self.assertEqual(res.rc, 1)
        self.assertIn("job 3 (FailingSource): run failed at block 3: RuntimeError: sensor unplugged", res.stderr)

    def test_setup_failure(self):
        res = run(job_spec("fixture_jobs:SetupFails", [CBOR], [pipe_spec(2)]), [b""])
        self.assertEqual(res.rc, 1)
        self.assertIn("job 3 (SetupFails): setup failed: OSError: no such sound card", res.stderr)

    def test_unencodable_value_names_job_pipe_and_type(self):
        res = run(job_spec("fixture_jobs:Unencodable", [CBOR], [pipe_spec(5)]), [encode_blocks(CBOR, [1])])
        self.assertEqual(res.rc, 1)
        self.assertIn("job 3 (Unencodable): at SQN 1: cannot encode the value for output pipe 5 (cbor), "
                      "a value of type set", res.stderr)

    def test_json_nan_names_the_reason(self):
        res = run(job_spec("fixture_jobs:NaNJob", [CBOR], [pipe_spec(5, "json")]), [encode_blocks(CBOR, [1])])
        self.assertEqual(res.rc, 1)
        self.assertIn("output pipe 5 (json)", res.stderr)
        self.assertIn("NaN is not valid JSON; other languages reject it", res.stderr)

    def test_tuple_length_mismatch(self):
        res = run(job_spec("fixture_jobs:StarJob", [CBOR, CBOR], [pipe_spec(3), pipe_spec(4)]),
                  [encode_blocks(CBOR, ["*"]), encode_blocks(CBOR, [1])])
        self.assertEqual(res.rc, 1)
        self.assertIn("job 3 (StarJob): at SQN 1: run returned a tuple of 3 value(s) but the job has 2 output(s)",
                      res.stderr)

    def test_bytes_block_of_the_wrong_size(self):
        p = pipe_spec(1, "bytes", 8)
        res = run(job_spec("fixture_jobs:Forward", [pipe_spec(1)], [p]), [encode_blocks(CBOR, [b"short"])])
        self.assertEqual(res.rc, 1)
        self.assertIn("output pipe 1 (bytes), a value of type bytes: got 5 bytes for block_size 8", res.stderr)

    def test_bug8_truncated_block_is_an_error_for_every_codec(self):
        for p, v in ((pipe_spec(1, "bytes", 8), b"12345678"), (pipe_spec(1, "json"), [1, 2]), (pipe_spec(1), "abc")):
            with self.subTest(codec=p["codec"]):
                data = encode_blocks(p, [v, v])
                res = run(job_spec("fixture_jobs:Forward", [p], [p]), [data[:-1]])
                self.assertEqual(res.rc, 1, res)
                self.assertIn("job 3 (Forward): input pipe 1 ended inside a block", res.stderr)
                self.assertEqual(len(decode_blocks(p, res.outputs[0])), 1)
                # and at a block boundary, EOF is the end: exit 0
                res = run(job_spec("fixture_jobs:Forward", [p], [p]), [data])
                self.assertEqual((res.rc, len(decode_blocks(p, res.outputs[0]))), (0, 2), res)

    def test_malformed_frames_name_pipe_and_sqn(self):
        res = run(job_spec("fixture_jobs:Forward", [pipe_spec(4, "json")], [pipe_spec(2)]),
                  [struct.pack(">QB", 9, 0) + b"{nope\n"])
        self.assertEqual(res.rc, 1)
        self.assertIn("input pipe 4: a malformed json frame at SQN 9", res.stderr)
        res = run(job_spec("fixture_jobs:Forward", [pipe_spec(4)], [pipe_spec(2)]), [struct.pack(">QB", 9, 0) + b"\xff"])
        self.assertIn("input pipe 4: a malformed cbor frame at SQN 9", res.stderr)

    def test_bug6_generator_run_with_inputs_is_refused_at_start(self):
        res = run(job_spec("fixture_jobs:GeneratorWithInput", [CBOR], [pipe_spec(2)]), [encode_blocks(CBOR, [1])])
        self.assertEqual(res.rc, 1)
        self.assertIn("run is a generator function but the job has 1 input(s)", res.stderr)

    def test_run_that_cannot_take_the_inputs_is_refused_at_start(self):
        res = run(job_spec("fixture_jobs:Forward", [CBOR, CBOR], [pipe_spec(2)]), [b"", b""])
        self.assertEqual(res.rc, 1)
        self.assertIn("run cannot take the job's 2 input(s)", res.stderr)

    def test_bug9_broken_output_pipe_ends_the_runner(self):
        res = run(job_spec("fixture_jobs:CountTwo", [], [pipe_spec(1), pipe_spec(2)], args={"n": 10 ** 9}),
                  close_outputs_first=True)
        self.assertEqual(res.rc, 141)
        self.assertEqual(res.stderr.strip().splitlines(),
                         ["job 3 (CountTwo): output pipe 1 was closed by the reader; stopping"])

    def test_bug9_connector_exception_fails_the_process(self):
        res = run(job_spec("fixture_jobs:Divide", [CBOR], [pipe_spec(2)]), [encode_blocks(CBOR, [0])])
        self.assertEqual(res.rc, 1)

    def test_sys_exit_in_run_keeps_its_status_and_the_answers_before(self):
        res = run(job_spec("fixture_jobs:ExitsAt", [CBOR], [pipe_spec(2)]), [encode_blocks(CBOR, [1, 2, 3, 4])])
        self.assertEqual((res.rc, values(res)), (4, [1, 2]))

    def test_import_error_names_module_interpreter_and_root(self):
        res = run(job_spec("no_such_pkg.jobs:SumJob", [CBOR], [pipe_spec(2)]), [b""])
        self.assertEqual(res.rc, 1)
        self.assertIn("cannot import module no_such_pkg.jobs (class no_such_pkg.jobs:SumJob)", res.stderr)
        self.assertIn("with %s" % sys.executable, res.stderr)
        self.assertIn("import root %s" % TESTS, res.stderr)
        self.assertIn("ModuleNotFoundError: No module named 'no_such_pkg'", res.stderr)

    def test_import_error_inside_the_module(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "broken.py"), "w") as f:
                f.write("import os\nraise RuntimeError('bad config')\n")
            res = run(job_spec("broken:Job", [CBOR], [pipe_spec(2)]), [b""], cwd=d)
        self.assertEqual(res.rc, 1)
        self.assertIn("cannot import module broken", res.stderr)
        self.assertIn("RuntimeError: bad config", res.stderr)
        self.assertIn("broken.py\", line 2", res.stderr)

    def test_missing_class_lists_the_job_classes(self):
        res = run(job_spec("fixture_fission_jobs:Nope", [CBOR], [pipe_spec(2)]), [b""])
        self.assertEqual(res.rc, 1)
        self.assertIn("has no class Nope; its job classes: CountJob, LocalMultiplySumJob", res.stderr)

    def test_bad_class_string_is_a_spec_error(self):
        res = run(job_spec("fixture_jobs.Forward", [CBOR], [pipe_spec(2)]), [b""])
        self.assertEqual(res.rc, 2)
        self.assertIn("is not of the form module:Class", res.stderr)

    def test_bad_arguments_are_spec_errors(self):
        res = run(job_spec("fixture_jobs:Forward", [CBOR], [pipe_spec(2)]), [], n_outputs=1)
        self.assertEqual(res.rc, 2)
        self.assertIn("0 -i and 1 -o for a job of 1 inputs and 1 outputs", res.stderr)
        res = run(job_spec("fixture_jobs:Forward", [CBOR], [pipe_spec(2)], head_size=5), [b""])
        self.assertEqual(res.rc, 2)

    def test_constructor_failure_names_the_args(self):
        res = run(job_spec("fixture_fission_jobs:ReadSoundFile", [], [pipe_spec(2)], args={"sound": "x"}))
        self.assertEqual(res.rc, 1)
        self.assertIn("constructing ReadSoundFile(**args) with args ['sound'] failed: TypeError", res.stderr)

    @unittest.skipIf(np is not None, "numpy is importable here")
    def test_dtype_without_numpy_fails_at_start_naming_the_pipe(self):
        res = run(job_spec("fixture_jobs:Forward", [pipe_spec(7, "bytes", 8, dtype="<f4")], [pipe_spec(2)]), [b""])
        self.assertEqual(res.rc, 1)
        self.assertIn("input pipe 7: dtype '<f4' needs numpy", res.stderr)


if __name__ == "__main__":
    unittest.main()
