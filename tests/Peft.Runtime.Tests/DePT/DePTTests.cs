using Peft.Runtime.Tests.Core;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.DePT;

/// <summary>
/// DePT against its formula (catalogue 5.5): <c>out = cat([P, E(ids) + (alpha / sqrt(r)) · A B], 1)</c>, with hand-computed
/// values, gradients, the init (B = 0 makes it prompt tuning), the length rule, merge refusal and the DePT fork's files.
/// </summary>
public sealed class DePTTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-dept-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (DirectoryNotFoundException) { }
    }

    /// <summary>An embedding 6 x 2 holding 0..11 row by row (E(i) = [2i, 2i + 1]), float64.</summary>
    private static AdaptedEmbedding Embedding()
    {
        var e = nn.Embedding(6, 2, dtype: ScalarType.Float64);
        using (torch.no_grad()) e.weight!.copy_(torch.arange(12, dtype: ScalarType.Float64).reshape(6, 2));
        return AdaptedEmbedding.Wrap(e, "embed");
    }

    private static void Set(Tensor p, params double[] values)
    {
        using var noGrad = torch.no_grad();
        using var v = torch.tensor(values, p.shape, ScalarType.Float64);
        p.copy_(v);
    }

    [Fact]
    public void TheCataloguesHandExampleAddsTheTableToRowZeroOnly()
    {
        // s = 2, r = 1, A = [[1], [0]], B = [[1, 1]], alpha = 1: scale 1/sqrt(1) = 1, A B = [[1, 1], [0, 0]].
        using var layer = Embedding();
        layer.WithAdapter("default", new DePTOptions(VirtualTokens: 1, MaxLength: 2, Rank: 1, Alpha: 1));
        var a = (DePTAdapter)layer.GetAdapter("default");
        Set(a.PromptEmbeddings, 9, 9);
        Set(a.A, 1, 0);
        Set(a.B, 1, 1);
        using var ids = torch.tensor(new long[] { 0, 1 }, new long[] { 1, 2 });
        using var y = layer.forward(ids);

        // [P; E(0) + [1, 1]; E(1)] = [[9, 9], [1, 2], [2, 3]].
        Assert.Equal(new long[] { 1, 3, 2 }, y.shape);
        Assert.Equal(new double[] { 9, 9, 1, 2, 2, 3 }, y.data<double>().ToArray());
    }

    [Fact]
    public void TheScaleIsAlphaOverTheSquareRootOfTheRankNotOverTheRank()
    {
        // r = 4, alpha = 8: scale 8 / sqrt(4) = 4 (LoRA's alpha / r would give 2). A B = [[1, 1], [0, 0]].
        using var layer = Embedding();
        layer.WithAdapter("default", new DePTOptions(VirtualTokens: 1, MaxLength: 2, Rank: 4, Alpha: 8));
        var a = (DePTAdapter)layer.GetAdapter("default");
        Assert.Equal(4.0, a.Options.Scaling);
        Set(a.PromptEmbeddings, 0, 0);
        Set(a.A, 1, 0, 0, 0, 0, 0, 0, 0);
        Set(a.B, 1, 1, 0, 0, 0, 0, 0, 0);
        using var ids = torch.tensor(new long[] { 2, 2 }, new long[] { 1, 2 });
        using var y = layer.forward(ids);
        Assert.Equal(new double[] { 0, 0, 8, 9, 4, 5 }, y.data<double>().ToArray());
    }

    [Fact]
    public void GradientsFollowTheFormula()
    {
        // Loss = sum of the output over a batch of 2. dL/dT = 2 · ones[2, 2] for the table T = s · A B (s = 1), so
        // dL/dA = 2 · ones · Bᵀ = [[4], [4]], dL/dB = Aᵀ · 2 · ones = [[2, 2]], dL/dP = 2 everywhere; the base gets none.
        using var layer = Embedding();
        layer.WithAdapter("default", new DePTOptions(VirtualTokens: 1, MaxLength: 2, Rank: 1, Alpha: 1));
        layer.Weight.requires_grad = false;
        var a = (DePTAdapter)layer.GetAdapter("default");
        Set(a.A, 1, 0);
        Set(a.B, 1, 1);
        using var ids = torch.tensor(new long[] { 0, 1, 3, 4 }, new long[] { 2, 2 });
        using var loss = layer.forward(ids).sum();
        loss.backward();
        Assert.Equal(new double[] { 4, 4 }, a.A.grad!.data<double>().ToArray());
        Assert.Equal(new double[] { 2, 2 }, a.B.grad!.data<double>().ToArray());
        Assert.Equal(new double[] { 2, 2 }, a.PromptEmbeddings.grad!.data<double>().ToArray());
        Assert.Null(layer.Weight.grad);
    }

    [Fact]
    public void ANewAdapterIsPromptTuningWithTheSamePromptBecauseBStartsAtZero()
    {
        torch.manual_seed(5);
        using var dept = Embedding();
        using var prompt = Embedding();
        dept.WithAdapter("default", new DePTOptions(VirtualTokens: 3, MaxLength: 4, Rank: 2));
        prompt.WithAdapter("default", new PromptTuningOptions(VirtualTokens: 3));
        var a = (DePTAdapter)dept.GetAdapter("default");
        Assert.True(a.B.eq(0).all().item<bool>());
        Assert.False(a.A.eq(0).all().item<bool>());

        // Kaiming-uniform with a = sqrt(5) on [S, r] = [4, 2]: bound = sqrt(6 / ((1 + 5) · fan_in)) = 1 / sqrt(2).
        Assert.True(a.A.abs().max().item<double>() <= 1 / Math.Sqrt(2));
        using (torch.no_grad()) prompt.GetPrompt("default").PromptEmbeddings.copy_(a.PromptEmbeddings);
        using var ids = torch.tensor(new long[] { 0, 1, 2, 3, 5, 4, 3, 2 }, new long[] { 2, 4 });
        using var y0 = dept.forward(ids);
        using var y1 = prompt.forward(ids);
        TensorAssert.Equal(y1, y0);
    }

    [Fact]
    public void AnInputOfAnotherLengthIsRefusedNamingTheMemberAndTheFix()
    {
        using var layer = Embedding();
        layer.WithAdapter("default", new DePTOptions(VirtualTokens: 2, MaxLength: 4, Rank: 1));
        using var ids = torch.tensor(new long[] { 0, 1, 2 }, new long[] { 1, 3 });
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.forward(ids));
        Assert.Contains("'embed'", ex.Message);
        Assert.Contains("exactly 4 token positions", ex.Message);
        Assert.Contains("Pad or truncate every input to 4 tokens", ex.Message);
    }

    [Fact]
    public void BadOptionsAreRefusedNamingTheMemberAndTheOption()
    {
        using var layer = Embedding();
        Assert.Contains("MaxLength", Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("d", new DePTOptions(MaxLength: 0))).Message);
        Assert.Contains("Rank", Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("d", new DePTOptions(Rank: 0))).Message);
        Assert.Contains("Alpha", Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("d", new DePTOptions(Alpha: double.NaN))).Message);
        var ex = Assert.Throws<PeftConfigurationException>(() => layer.WithAdapter("d", new DePTOptions(VirtualTokens: -1)));
        Assert.Contains("'embed'", ex.Message);
        Assert.Contains("VirtualTokens", ex.Message);
    }

    [Fact]
    public void TheTableLearningRateSelectsExactlyTheTwoFactors()
    {
        using var model = new DePTHolder(new DePTOptions(VirtualTokens: 2, MaxLength: 3, Rank: 1));
        var a = (DePTAdapter)model.Embed.GetAdapter("default");
        var rate = model.DePTLearningRates(1e-3);
        Assert.Equal(1e-3, rate(a.A));
        Assert.Equal(1e-3, rate(a.B));
        Assert.Null(rate(a.PromptEmbeddings));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.DePTLearningRates(0));
    }

    [Fact]
    public void TheFileHasTheForksKeysAndLoadsIntoAFreshModel()
    {
        using var model = new DePTHolder(new DePTOptions(VirtualTokens: 2, MaxLength: 3, Rank: 2, Alpha: 4));
        var a = (DePTAdapter)model.Embed.GetAdapter("default");
        using (torch.no_grad()) a.B.normal_();
        AdapterFiles.Save(model, _dir);
        using (var reader = SafetensorsFile.Open(Path.Combine(_dir, AdapterFiles.WeightsFileName)))
        {
            Assert.Equal(new[] { "prompt_embeddings", "prompt_encoder.lora_embedding_A", "prompt_encoder.lora_embedding_B" },
                reader.Tensors.Select(t => t.Name).OrderBy(n => n, StringComparer.Ordinal));
        }

        string json = File.ReadAllText(Path.Combine(_dir, AdapterFiles.ConfigFileName));
        foreach (var field in new[] { "\"peft_type\": \"PROMPT_TUNING_LORA\"", "\"max_length\": 3", "\"r\": 2", "\"lora_alpha\": 4", "\"hidden_size\": 2", "\"load_lora_embedding_B\": true" })
            Assert.Contains(field, json);

        using var fresh = new DePTHolder(null);
        AdapterFiles.Load(fresh, _dir);
        var b = (DePTAdapter)fresh.Embed.GetAdapter("default");
        TensorAssert.Equal(a.A, b.A);
        TensorAssert.Equal(a.B, b.B);
        using var ids = torch.tensor(new long[] { 1, 2, 3 }, new long[] { 1, 3 });
        using var y0 = model.forward(ids);
        using var y1 = fresh.forward(ids);
        TensorAssert.Equal(y0, y1);
    }

    [Fact]
    public void AForkFileWithoutItsTableOrOfAnotherLengthIsRefused()
    {
        Directory.CreateDirectory(_dir);
        SafetensorsFile.Write(Path.Combine(_dir, AdapterFiles.WeightsFileName), new[]
        {
            new KeyValuePair<string, Tensor>("prompt_embeddings", torch.zeros(2, 2)),
            new KeyValuePair<string, Tensor>("prompt_encoder.lora_embedding_A", torch.zeros(5, 1)),
            new KeyValuePair<string, Tensor>("prompt_encoder.lora_embedding_B", torch.zeros(1, 2)),
        });
        string config = Path.Combine(_dir, AdapterFiles.ConfigFileName);
        File.WriteAllText(config, """{"peft_type": "PROMPT_TUNING_LORA", "num_virtual_tokens": 2, "token_dim": 2, "max_length": 5, "r": 1, "lora_alpha": 8, "load_lora_embedding_B": false}""");
        using var model = new DePTHolder(null);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, _dir));
        Assert.Contains("load_lora_embedding_B", ex.Message);

        File.WriteAllText(config, """{"peft_type": "PROMPT_TUNING_LORA", "num_virtual_tokens": 2, "token_dim": 2, "max_length": 4, "r": 1, "lora_alpha": 8}""");
        ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, _dir));
        Assert.Contains("prompt_encoder.lora_embedding_A [4, 1]", ex.Message);
        Assert.Empty(model.AdapterNames());
    }
}

/// <summary>An [Adaptable] embedding front end (6 x 2, holding 0..11), with an optional DePT adapter added by configuration.</summary>
[Adaptable]
public sealed partial class DePTHolder : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> embed;

    /// <summary>Builds the embedding and, when given, adds DePT to it by configuration.</summary>
    /// <param name="options">The DePT options, or null for none.</param>
    public DePTHolder(DePTOptions? options)
        : base(nameof(DePTHolder))
    {
        var e = nn.Embedding(6, 2);
        using (torch.no_grad()) e.weight!.copy_(torch.arange(12, dtype: ScalarType.Float32).reshape(6, 2));
        embed = e;
        InitializePeft();
        if (options is not null) this.ApplyTargets(new PeftTargets(TargetModules.Names("embed"), options));
    }

    /// <summary>The wrapped embedding.</summary>
    public AdaptedEmbedding Embed => (AdaptedEmbedding)embed;

    /// <inheritdoc />
    public override Tensor forward(Tensor ids) => embed.call(ids);
}
