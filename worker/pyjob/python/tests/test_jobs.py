"""The job API, run in-process through marvelo.testing.emulate."""

import os
import sys
import unittest

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(TESTS))
sys.path.insert(0, TESTS)

import fixture_jobs as fj  # noqa: E402
from marvelo import End, Head, LocalJob, PythonJob  # noqa: E402
from marvelo.engine import ReturnError  # noqa: E402
from marvelo.testing import emulate  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None


class ReturnValueTest(unittest.TestCase):
    def test_a_non_tuple_goes_to_every_output(self):
        res = emulate(fj.Forward(), inputs=[[1, [1, 2], "x"]], output_pipes=[None, None])
        self.assertEqual(res.outputs, [[1, [1, 2], "x"], [1, [1, 2], "x"]])

    def test_a_tuple_gives_one_value_per_output(self):
        self.assertEqual(emulate(fj.StarJob())("*", 1, 2, 3), [6, 6, "*"])

    def test_tuple_length_is_checked(self):
        with self.assertRaisesRegex(ReturnError, "tuple of 3 value\\(s\\) but the job has 2 output"):
            emulate(fj.StarJob(), output_pipes=[None, None])("*", 1)

    def test_one_tuple_to_every_output(self):
        class OneTuple(PythonJob):
            def run(self, x):
                return ((x, x),)

        class RepeatedTuple(PythonJob):
            def run(self, x):
                return tuple([(x, x)] * len(self.outputs))

        self.assertEqual(emulate(OneTuple(), output_pipes=[None])(1), [[1, 1]])
        self.assertEqual(emulate(RepeatedTuple(), output_pipes=[None, None])(2), [[2, 2], [2, 2]])

    def test_variadic_run(self):
        self.assertEqual(emulate(fj.MultiplySumJob())(2, 1, 2, 3), [12])
        self.assertEqual(emulate(fj.SumJob(), inputs=[[1, 2], [10, 20], [100, 200]]).outputs, [[111, 222]])

    def test_a_list_input_per_block_count(self):
        res = emulate(fj.BlockSum(), inputs=[[[1, 2, 3], [4, 5, 6]]], input_pipes=[{"block_count": 3}],
                      output_pipes=[None, None])
        self.assertEqual(res.outputs, [[6, 15], [3, 3]])

    def test_bug1_ndarray_return_compared_with_is_none(self):
        if np is None:
            self.skipTest("numpy is not importable")
        res = emulate(fj.Doubler(), inputs=[[np.arange(4)]], arrays="numpy")
        self.assertEqual(res.outputs[0][0].tolist(), [0, 2, 4, 6])


class SkipTest(unittest.TestCase):
    def test_bug7_none_skips_the_round_and_the_job_goes_on(self):
        res = emulate(fj.SkipOdd(), inputs=[[1, 2, 3, 4]])
        self.assertEqual(res.outputs, [[None, 2, None, 4]])
        self.assertEqual([h.corrupted for h in res.heads[0]], [True, False, True, False])
        self.assertFalse(res.finished)

    def test_none_in_a_tuple_or_bit_0_in_out_heads_skips_that_output(self):
        res = emulate(fj.SkipFirstOutput(), inputs=[[1, 2, 3]], output_pipes=[None, None])
        self.assertEqual(res.outputs, [[None, 2, 3], [1, None, 3]])

    def test_a_sink_returning_anything_is_fine(self):
        class Sink(PythonJob):
            def run(self, x):
                return (1, 2, 3)

        res = emulate(Sink(), inputs=[[1, 2]], output_pipes=[])
        self.assertEqual((res.outputs, res.rounds), ([], 2))


class FinishTest(unittest.TestCase):
    def test_finish_sets_bit_2_and_ends_after_the_round(self):
        res = emulate(fj.FinishAt(at=2), inputs=[[1, 2, 3, 4]])
        self.assertEqual(res.outputs, [[1, 2]])
        self.assertEqual([h.finished for h in res.heads[0]], [False, True])
        self.assertTrue(res.finished)

    def test_bug5_finish_sets_bit_2_for_every_head_size(self):
        for size in (1, 2, 3, 4):
            res = emulate(fj.FinishAt(at=1), inputs=[[1]], head_size=size)
            head = res.heads[0][0]
            self.assertEqual((head.size, int(head)), (size, 1 << (8 * size - 3)))
            self.assertFalse(fj.FinishAt.HEAD)

    def test_end_ends_now_without_an_answer(self):
        res = emulate(fj.EndAt(at=3), inputs=[[1, 2, 3, 4]])
        self.assertEqual(res.outputs, [[1, 2]])
        self.assertTrue(res.finished)
        job = emulate(fj.EndAt(at=1))
        with self.assertRaises(End):
            job(1)

    def test_sink_finish_ends_after_the_round(self):
        class Sink(PythonJob):
            seen = []

            def run(self, x):
                self.seen.append(x)
                if x == 2:
                    self.finish()

        res = emulate(Sink(), inputs=[[1, 2, 3]], output_pipes=[])
        self.assertTrue(res.finished)
        self.assertEqual(Sink.seen, [1, 2])


class SourceTest(unittest.TestCase):
    def test_generator_source_with_two_outputs(self):
        res = emulate(fj.CountTwo(n=4))
        self.assertEqual(res.outputs, [[1, 2, 3, 4], [4, 3, 2, 1]])
        self.assertEqual([h.finished for h in res.heads[1]], [False, False, False, True])

    def test_plain_run_source(self):
        res = emulate(fj.CountPlain())
        self.assertEqual(res.outputs, [[1, 2, 3, 4]])
        self.assertTrue(res.finished)

    def test_exhaustion_ends_a_generator_source(self):
        res = emulate(fj.Exhausting())
        self.assertEqual((res.outputs, res.finished), ([[0, 1, 2]], True))

    def test_rounds_limit_and_next_round_by_call(self):
        self.assertEqual(emulate(fj.CountTwo(n=10), rounds=3).outputs, [[1, 2, 3], [10, 9, 8]])
        job = emulate(fj.CountTwo(n=10))
        self.assertEqual(job(), [1, 10])
        self.assertEqual(job(), [2, 9])

    def test_a_source_that_never_ends_is_an_error_without_rounds(self):
        class Forever(PythonJob):
            def run(self):
                return 1

        with self.assertRaisesRegex(RuntimeError, "did not end within .* pass rounds=N"):
            emulate(Forever()).outputs
        self.assertEqual(emulate(Forever(), rounds=2).outputs, [[1, 1]])

    def test_bug6_generator_run_with_inputs_is_refused(self):
        with self.assertRaisesRegex(ValueError, "generator function but the job has 1 input"):
            emulate(fj.GeneratorWithInput())(1)


class HeadTest(unittest.TestCase):
    def test_self_head_is_the_or_of_the_inputs_and_bit_0_is_cleared(self):
        res = emulate(fj.HeadEcho(), inputs=[[1, 2], [3, 4]], heads=[[0x80, 0x01], [0x02, 0x01]])
        self.assertEqual(res.outputs, [[0x82, 0x01]])
        self.assertEqual([int(h) for h in res.heads[0]], [0x02 | 0x04, 0x01 | 0x04])  # user bit 5 set

    def test_in_heads_per_input_and_lists_for_block_count(self):
        seen = []

        class Look(PythonJob):
            def run(self, a, b):
                seen.append((self.in_heads, self.head, self.out_heads))

        emulate(Look(), inputs=[[1], [[1, 2]]], input_pipes=[None, {"block_count": 2}],
                heads=[[0x01], [[0x02, 0x04]]], output_pipes=[None]).outputs
        in_heads, head, out_heads = seen[0]
        self.assertEqual(in_heads, [Head(0x01), [Head(0x02), Head(0x04)]])
        self.assertEqual((head, out_heads), (Head(0x07), [None]))

    def test_head_reduce_override(self):
        res = emulate(fj.AndReduce(), inputs=[[1], [1]], heads=[[0x03], [0x06]])
        self.assertEqual(res.outputs, [[0x02]])

    def test_two_byte_heads(self):
        res = emulate(fj.HeadEcho(), inputs=[[1]], heads=[[0x0101]], head_size=2)
        self.assertEqual(res.outputs, [[0x0101]])
        self.assertEqual(res.heads[0][0], Head(0x0101 | 0x0400, 2))

    def test_a_dummy_input_arrives_with_bit_0_and_the_zero_value(self):
        res = emulate(fj.HeadEcho(), inputs=[[None]])
        self.assertEqual(res.outputs, [[0x80]])
        self.assertFalse(res.heads[0][0].corrupted)  # the answer clears it; the worker ORs it back
        self.assertEqual(emulate(fj.Describe())(None), ["NoneType "])


class SetupTest(unittest.TestCase):
    def test_bug11_emulate_calls_setup_and_skipped_output_does_not_block(self):
        job = emulate(fj.SetupOnce(), output_pipes=[None, None])
        self.assertEqual(job(1), [101, 1])
        self.assertEqual(job(2), [102, 1])
        self.assertEqual(emulate(fj.SkipOdd())(1), [None])

    def test_pipes_and_id_are_set_before_setup(self):
        res = emulate(fj.PipesSeen(), inputs=[[0]], input_pipes=[{"pipe": 7}],
                      output_pipes=[{"pipe": 8, "codec": "json"}])
        self.assertEqual(res.outputs, [[[0, [7], ["json"]]]])


class InheritanceTest(unittest.TestCase):
    def test_local_job_in_both_orders_in_one_module(self):
        class A(LocalJob, PythonJob):
            def run(self):
                yield 1

        class B(PythonJob, LocalJob):
            def run(self):
                yield 2

        self.assertEqual((A.GROUPS, B.GROUPS, PythonJob.GROUPS), ("LOCAL", "LOCAL", "ALL"))
        self.assertEqual(emulate(A()).outputs, [[1]])
        self.assertEqual(emulate(fj.SourceLocal()).outputs, [[1]])
        self.assertEqual(emulate(fj.LocalSource()).outputs, [[2]])

    def test_class_attributes_exist(self):
        for name in ("HEAD", "GROUPS", "DEFAULT_NODE", "MAX_QUEUE", "DEPENDENCIES"):
            self.assertTrue(hasattr(PythonJob, name), name)

    def test_init_tolerates_extra_arguments_and_a_missing_super_call(self):
        PythonJob(None, None, "extra", key="word")

        class NoSuper(PythonJob):
            def __init__(self, k):
                self.k = k

            def run(self, x):
                self.finish()
                return x + self.k

        res = emulate(NoSuper(1), inputs=[[1, 2]])
        self.assertEqual((res.outputs, res.finished), ([[2]], True))


class FissionTest(unittest.TestCase):
    def test_a_marvelo_job_module_runs_unchanged(self):
        import fixture_fission_jobs as ff
        from fission.core.pipes import JSONPipe, PicklePipe

        res = emulate(ff.ReadSoundFile("abcd", outputs=[PicklePipe(1)]))
        self.assertEqual(res.outputs, [[4, 2, 3]])
        res = emulate(ff.CountJob(start=10, step=5, outputs=[PicklePipe(1), JSONPipe(2)]))
        self.assertEqual(res.outputs, [[10, 15, 20], [-10, -15, -20]])
        self.assertTrue(res.finished)
        self.assertEqual(emulate(ff.LocalMultiplySumJob())(2, 3, 4), [14])
        self.assertEqual(emulate(ff.OtherOrder())(2, 3, 4), [14])
        self.assertEqual(ff.LocalMultiplySumJob.GROUPS, "LOCAL")

    def test_fission_names(self):
        from fission.core.head import Head as FHead
        from fission.core.jobs import Head as JHead, LocalJob as FLocal, PythonJob as FPython
        from fission.core.pipes import BytesPipe, OptionalPicklePipe
        from fission.emulate import emulate as femulate

        self.assertIs(FPython, PythonJob)
        self.assertIs(FLocal, LocalJob)
        self.assertIs(FHead, Head)
        self.assertIs(JHead, Head)
        self.assertIs(femulate, emulate)
        self.assertEqual((BytesPipe(3, 8).block_size, BytesPipe(3, 8).codec), (8, "bytes"))
        self.assertTrue(OptionalPicklePipe(1).OPTIONAL)


if __name__ == "__main__":
    unittest.main()
