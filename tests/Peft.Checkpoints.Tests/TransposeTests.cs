using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static Peft.Checkpoints.Tests.Support;
using static TorchSharp.torch;

namespace Peft.Checkpoints.Tests;

/// <summary>
/// <see cref="CheckpointLoadOptions.TransposedInCheckpoint"/> / <see cref="CheckpointSaveOptions.TransposedInCheckpoint"/>:
/// weights stored [in, out] on disk (transformers' Conv1D) for a Linear's [out, in].
/// </summary>
public sealed class TransposeTests : IDisposable
{
    private readonly TempDirectory _tmp = new();

    public void Dispose() => _tmp.Dispose();

    /// <summary><c>proj</c> Linear(3 → 5) and <c>head</c> Linear(5 → 2); no adapters.</summary>
    private sealed class TwoLinear : nn.Module<Tensor, Tensor>
    {
        private readonly Linear proj;
        private readonly Linear head;

        public TwoLinear(int seed) : base(nameof(TwoLinear))
        {
            manual_seed(seed);
            proj = nn.Linear(3, 5);
            head = nn.Linear(5, 2);
            register_module(nameof(proj), proj);
            register_module(nameof(head), head);
        }

        public override Tensor forward(Tensor x) => head.call(proj.call(x));
    }

    private static bool ProjWeight(string name) => name == "proj.weight";

    private static HfConfig Config() => HfConfig.Parse("""{"model_type": "test"}""");

    [Fact]
    public void Marked_weights_are_written_transposed_and_read_back_bitwise()
    {
        var dir = _tmp.Sub("t");
        using var source = new TwoLinear(1);
        HfCheckpoint.Save(source, dir, Config(), new CheckpointSaveOptions { TransposedInCheckpoint = ProjWeight });

        var p = Params(source);
        using (var reader = SafetensorsFile.Open(Path.Combine(dir, HfCheckpoint.WeightsFileName)))
        {
            Assert.Equal(new long[] { 3, 5 }, reader.GetInfo("proj.weight").Shape);
            Assert.Equal(new long[] { 2, 5 }, reader.GetInfo("head.weight").Shape);   // not marked: as in the model
            using var stored = reader.ReadTensor("proj.weight");
            using var expected = p["proj.weight"].detach().t().contiguous();
            Assert.Equal(Bytes(expected), Bytes(stored));
        }

        using var target = new TwoLinear(2);
        var report = HfCheckpoint.Load(target, dir, new CheckpointLoadOptions { TransposedInCheckpoint = ProjWeight });
        Assert.True(report.IsComplete);
        foreach (var (name, value) in Params(target)) Assert.Equal(Bytes(p[name]), Bytes(value));
    }

    [Fact]
    public void Transposed_weights_read_without_the_option_are_named_shape_mismatches()
    {
        var dir = _tmp.Sub("t");
        using var source = new TwoLinear(3);
        HfCheckpoint.Save(source, dir, Config(), new CheckpointSaveOptions { TransposedInCheckpoint = ProjWeight, DType = SafetensorsDType.BF16 });

        using var target = new TwoLinear(4);
        var before = Snapshot(target);
        var e = Assert.Throws<CheckpointMismatchException>(() => HfCheckpoint.Load(target, dir));
        Assert.Contains("proj.weight: checkpoint [3, 5], model [5, 3]", e.Message);
        AssertUnchanged(before, target);

        // With the option: BF16 values, transposed, converted to the model's F32.
        HfCheckpoint.Load(target, dir, new CheckpointLoadOptions { TransposedInCheckpoint = ProjWeight });
        using var rounded = Params(source)["proj.weight"].detach().to_type(ScalarType.BFloat16).to_type(ScalarType.Float32);
        Assert.Equal(Bytes(rounded), Bytes(Params(target)["proj.weight"]));
    }

    [Fact]
    public void Marking_a_tensor_that_is_not_two_dimensional_is_refused_by_name()
    {
        var dir = _tmp.Sub("t");
        using var source = new TwoLinear(5);
        var e = Assert.Throws<ArgumentException>(() =>
            HfCheckpoint.Save(source, dir, Config(), new CheckpointSaveOptions { TransposedInCheckpoint = n => n == "proj.bias" }));
        Assert.Contains("proj.bias", e.Message);
        Assert.False(File.Exists(Path.Combine(dir, HfCheckpoint.WeightsFileName)));

        HfCheckpoint.Save(source, dir, Config());
        using var target = new TwoLinear(6);
        var before = Snapshot(target);
        var mismatch = Assert.Throws<CheckpointMismatchException>(() =>
            HfCheckpoint.Load(target, dir, new CheckpointLoadOptions { TransposedInCheckpoint = n => n == "proj.bias" }));
        Assert.Contains("proj.bias: checkpoint [5] (stored transposed, [in, out]), model [5]", mismatch.Message);
        AssertUnchanged(before, target);
    }
}
