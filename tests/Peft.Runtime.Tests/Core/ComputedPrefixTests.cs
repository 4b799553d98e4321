using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// The seams for prefixes computed from parameters (<see cref="IPrefixAdapter.ComputePrefix"/>) and for files that hold
/// tensors computed from parameters (<see cref="IComputedFileTensorsAdapter"/>), checked with a one-parameter adapter whose
/// prefix and file tensor are <c>2 · w</c>: the layer prepends the computed prefix with gradients to <c>w</c>, the file holds
/// <c>2 · w</c> (not <c>w</c>), and the model's fingerprint is its file's. (The refused load back into such an adapter is
/// tested with P-tuning, the registered method that has one: tests/Peft.Runtime.Tests/PTuning.)
/// </summary>
public sealed class ComputedPrefixTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-computed-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (DirectoryNotFoundException) { }
    }

    private static AdaptedEmbedding Layer()
    {
        var e = nn.Embedding(4, 2, dtype: ScalarType.Float64);
        using (torch.no_grad()) e.weight!.copy_(torch.arange(8, dtype: ScalarType.Float64).reshape(4, 2));
        var layer = AdaptedEmbedding.Wrap(e, "embed");
        layer.WithAdapter("default", new DoubledOptions());
        var w = ((DoubledAdapter)layer.GetAdapter("default")).W;
        using (torch.no_grad()) w.copy_(torch.tensor(new double[] { 1, -2 }, new long[] { 1, 2 }, ScalarType.Float64));
        return layer;
    }

    [Fact]
    public void TheLayerPrependsTheComputedPrefixAndItsGradientReachesTheParameter()
    {
        using var layer = Layer();
        layer.Weight.requires_grad = false;
        var w = ((DoubledAdapter)layer.GetAdapter("default")).W;
        using var ids = torch.tensor(new long[] { 3, 0 }, new long[] { 1, 2 });
        using var y = layer.forward(ids);

        // [2w; E(3); E(0)] = [[2, -4], [6, 7], [0, 1]].
        Assert.Equal(new long[] { 1, 3, 2 }, y.shape);
        Assert.Equal(new double[] { 2, -4, 6, 7, 0, 1 }, y.data<double>().ToArray());

        // L = sum of the output: dL/dw = 2 everywhere; the base gets nothing.
        using var loss = y.sum();
        loss.backward();
        Assert.Equal(new double[] { 2, 2 }, w.grad!.data<double>().ToArray());
        Assert.Null(layer.Weight.grad);
    }

    [Fact]
    public void TheFileHoldsTheComputedTensorAndTheModelsFingerprintIsTheFiles()
    {
        using var model = new Holder(Layer());
        AdapterFiles.Save(model, _dir);
        using (var reader = SafetensorsFile.Open(Path.Combine(_dir, AdapterFiles.WeightsFileName)))
        {
            Assert.Equal(new[] { "prompt_embeddings" }, reader.Tensors.Select(t => t.Name).ToArray());
            using var saved = reader.ReadTensor("prompt_embeddings");
            Assert.Equal(new double[] { 2, -4 }, saved.data<double>().ToArray());
            Assert.Equal(MergedAdapterMetadata.Fingerprint(model, "default"), MergedAdapterMetadata.Fingerprint(reader, DoubledMethod.Instance));
        }
    }

    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        public Holder(AdaptedEmbedding embed) : base(nameof(Holder))
        {
            Embed = embed;
            register_module("embed", embed);
        }

        public AdaptedEmbedding Embed { get; }

        public override Tensor forward(Tensor input) => Embed.forward(input);
    }

    private sealed record DoubledOptions : PeftAdapterOptions
    {
        public override PeftMethod Method => DoubledMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new DoubledAdapter(adapterName, layer, this);
    }

    private sealed class DoubledAdapter : PeftAdapter, IPrefixAdapter, IComputedFileTensorsAdapter
    {
        private readonly DoubledOptions _options;

        public DoubledAdapter(string name, PeftLayerInfo layer, DoubledOptions options) : base(name, layer)
        {
            _options = options;
            W = CreateParameter("w", 1, layer.OutFeatures);
        }

        public Parameter W { get; }

        public override PeftAdapterOptions Config => _options;

        public int Length => 1;

        public bool ComputesFileTensors => true;

        public Tensor ComputePrefix() => W.mul(2);

        public IReadOnlyList<(string PeftName, Tensor Value)> ComputeFileTensors()
        {
            using var noGrad = torch.no_grad();
            return new[] { ("prompt_embeddings", W.mul(2)) };
        }

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("w", W);
        }
    }

    private sealed class DoubledMethod : PeftMethod
    {
        public static DoubledMethod Instance { get; } = new();

        public override string Name => "Doubled";

        public override string PeftType => "TEST_DOUBLED_PROMPT";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Embedding;

        public override Type AttributeType => typeof(Attribute);

        public override Type OptionsType => typeof(DoubledOptions);

        public override bool IsPromptLearning => true;

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "prompt_embeddings" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => new DoubledOptions();

        public override void WriteConfig(AdapterConfigWriter writer)
        {
        }
    }
}
