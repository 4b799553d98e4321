using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// The position-offset capability of <see cref="AdaptedEmbedding"/> (<see cref="IPositionOffsetAdapter"/>), with a test
/// adapter whose table is one trainable parameter <c>[S, dim]</c>: added to the token embeddings position by position,
/// before a prefix, only for inputs of exactly S tokens, gone while disabled, one at a time, never merged.
/// </summary>
public class PositionOffsetTests
{
    private static AdaptedEmbedding Embedding()
    {
        var e = nn.Embedding(6, 2, dtype: ScalarType.Float64);
        using (torch.no_grad()) e.weight!.copy_(torch.arange(12, dtype: ScalarType.Float64).reshape(6, 2));
        return AdaptedEmbedding.Wrap(e, "embed");
    }

    [Fact]
    public void TheTableIsAddedPositionByPositionOverTheBatch()
    {
        using var layer = Embedding();
        layer.WithAdapter("t", new TableOptions(3));
        var adapter = (TableAdapter)layer.GetAdapter("t");
        using (torch.no_grad()) adapter.Table.copy_(torch.tensor(new double[] { 1, 2, 3, 4, 5, 6 }, new long[] { 3, 2 }, ScalarType.Float64));
        using var ids = torch.tensor(new long[] { 0, 1, 2, 5, 5, 5 }, new long[] { 2, 3 });
        using var y = layer.forward(ids);

        // Row r of E(ids) gets table row r: E(0) = [0, 1] + [1, 2], E(5) = [10, 11] + [5, 6].
        var expected = new double[] { 1, 3, 5, 7, 9, 11, 11, 13, 13, 15, 15, 17 };
        Assert.Equal(expected, y.data<double>().ToArray());
        Assert.Equal(3, layer.RequiredInputLength);

        using var loss = y.sum();
        loss.backward();
        Assert.Equal(new double[] { 2, 2, 2, 2, 2, 2 }, adapter.Table.grad!.data<double>().ToArray());
    }

    [Fact]
    public void AnyOtherInputLengthIsRefusedNamingTheMemberAndTheFix()
    {
        using var layer = Embedding();
        layer.WithAdapter("t", new TableOptions(3));
        using var ids = torch.tensor(new long[] { 0, 1 }, new long[] { 1, 2 });
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.forward(ids));
        Assert.Contains("'embed'", ex.Message);
        Assert.Contains("exactly 3 token positions", ex.Message);
        Assert.Contains("has 2 positions", ex.Message);
        Assert.Contains("Pad or truncate", ex.Message);
    }

    [Fact]
    public void DisabledTheLayerIsTheBaseEmbeddingAndAcceptsAnyLength()
    {
        using var layer = Embedding();
        layer.WithAdapter("t", new TableOptions(3));
        layer.AdaptersDisabled = true;
        using var ids = torch.tensor(new long[] { 4, 1 }, new long[] { 1, 2 });
        using var y = layer.forward(ids);
        Assert.Equal(new double[] { 8, 9, 2, 3 }, y.data<double>().ToArray());
        Assert.Null(layer.RequiredInputLength);
    }

    [Fact]
    public void TwoLiveTablesAreRefusedAndMergeLeavesTheTableActing()
    {
        using var layer = Embedding();
        layer.WithAdapter("a", new TableOptions(2)).WithAdapter("b", new TableOptions(2));
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.SetActiveAdapters("a", "b"));
        Assert.Contains("only one position table", ex.Message);

        layer.SetActiveAdapter("a");
        var adapter = (TableAdapter)layer.GetAdapter("a");
        using (torch.no_grad()) adapter.Table.fill_(1);
        using var weight = layer.Weight.detach().clone();
        layer.Merge();
        Assert.True(layer.Weight.eq(weight).all().item<bool>());
        using var ids = torch.tensor(new long[] { 0, 0 }, new long[] { 1, 2 });
        using var y = layer.forward(ids);
        Assert.Equal(new double[] { 1, 2, 1, 2 }, y.data<double>().ToArray());
    }

    private sealed record TableOptions(int Positions) : PeftAdapterOptions
    {
        public override PeftMethod Method => TableMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new TableAdapter(adapterName, layer, this);
    }

    private sealed class TableAdapter : PeftAdapter, IPositionOffsetAdapter
    {
        private readonly TableOptions _options;

        public TableAdapter(string name, PeftLayerInfo layer, TableOptions options)
            : base(name, layer)
        {
            _options = options;
            Table = CreateParameter("table", options.Positions, layer.OutFeatures);
            using var noGrad = torch.no_grad();
            Table.zero_();
        }

        public Parameter Table { get; }

        public int Positions => _options.Positions;

        public override PeftAdapterOptions Config => _options;

        public Tensor ComputeOffset() => Table.alias();

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("table", Table);
        }
    }

    private sealed class TableMethod : PeftMethod
    {
        public static readonly TableMethod Instance = new();

        public override string Name => "Table";

        public override string PeftType => "TEST_TABLE";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Embedding;

        public override Type AttributeType => typeof(TableOptions);

        public override Type OptionsType => typeof(TableOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "table" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
