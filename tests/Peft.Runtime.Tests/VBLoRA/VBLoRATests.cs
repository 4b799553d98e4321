using Peft.Runtime.Tests.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.VBLoRA;

/// <summary>VB-LoRA against its formula (PEFT's vblora/layer.py): every length-L sub-vector of A <c>[r, in]</c> and B
/// <c>[out, r]</c> is <c>Σ_{k ∈ topk(ℓ)} softmax(ℓ_topk)_k · V[k]</c> over the adapter's shared bank V <c>[N, L]</c>,
/// <c>ΔW = B A</c>; the catalogue's example, a hand-computed update, the reshape orders against an entry-by-entry build,
/// gradients (logits and the shared bank), merge, and the bank as one trainable parameter.</summary>
public class VBLoRATests
{
    /// <summary>Adapted linear layers (8 → 4, 4 → 12) with VB-LoRA "default" (L = 4) on both, bound as a model.</summary>
    private static (nn.Module<Tensor, Tensor> Model, VBLoRAAdapter[] Adapters) TwoLayers(VBLoRAOptions options, ScalarType dtype = ScalarType.Float32)
    {
        var first = AdaptedLinear.Wrap(nn.Linear(8, 4, dtype: dtype), "fc1").WithVBLoRA("default", options);
        var second = AdaptedLinear.Wrap(nn.Linear(4, 12, dtype: dtype), "fc2").WithVBLoRA("default", options);
        var model = nn.Sequential(("fc1", first), ("fc2", second));
        model.BindSharedTensors();
        return (model, new[] { (VBLoRAAdapter)first.GetAdapter("default"), (VBLoRAAdapter)second.GetAdapter("default") });
    }

    private static void Set(Tensor tensor, float[] values)
    {
        using var noGrad = torch.no_grad();
        using var t = torch.tensor(values, tensor.shape);
        tensor.copy_(t);
    }

    private static SharedAdapterTensors Bank(float[] values, long n, long l)
        => new(new[] { ("vblora_vector_bank", torch.tensor(values, new[] { n, l })) }, persistent: true, trainable: new[] { "vblora_vector_bank" });

    /// <summary>The mixture for one logits row, entry by entry: the k largest logits (ties to the lower index), their
    /// softmax, and the weighted sum of those bank rows.</summary>
    private static Tensor MixtureByEntries(Tensor logits, Tensor bank, int topK)
    {
        var order = Enumerable.Range(0, (int)logits.shape[0]).OrderByDescending(i => logits[i].item<double>()).ThenBy(i => i).Take(topK).ToList();
        var chosen = torch.stack(order.Select(i => logits[i]));
        var weights = chosen.exp() / chosen.exp().sum();
        return torch.stack(order.Select((i, j) => weights[j] * bank[i])).sum(dim: 0, keepdim: false);
    }

    /// <summary>A and B entry by entry: A[i, t·L + l] = mix(ℓ_A[i, t])[l]; B[t·L + l, i] = mix(ℓ_B[t, i])[l].</summary>
    private static (Tensor A, Tensor B) FactorsByEntries(VBLoRAAdapter a)
    {
        long r = a.Options.Rank, l = a.Options.VectorLength;
        var bank = a.Bank;
        var aRows = new List<Tensor>();
        for (long i = 0; i < r; i++)
        {
            aRows.Add(torch.cat(Enumerable.Range(0, (int)(a.InFeatures / l)).Select(t => MixtureByEntries(a.LogitsA[i, t], bank, a.Options.TopK)).ToList(), 0));
        }

        var bCols = new List<Tensor>();
        for (long i = 0; i < r; i++)
        {
            bCols.Add(torch.cat(Enumerable.Range(0, (int)(a.OutFeatures / l)).Select(t => MixtureByEntries(a.LogitsB[t, i], bank, a.Options.TopK)).ToList(), 0));
        }

        return (torch.stack(aRows), torch.stack(bCols, 1));
    }

    [Fact]
    public void TheCataloguesExampleMixesTheTwoBankVectorsWithSoftmaxWeights()
    {
        // N = 2, L = 2, V = I₂, logits [2, 0] ⇒ weights softmax([2, 0]) = [0.8808, 0.1192] ⇒ sub-vector [0.8808, 0.1192].
        using var logits = torch.tensor(new float[] { 2, 0 });
        using var bank = torch.eye(2);
        using var mixed = VBLoRAAdapter.Compose(logits, bank, 2);
        TensorAssert.Close(torch.tensor(new float[] { 0.8807971f, 0.1192029f }), mixed, 1e-6);
        using var top1 = VBLoRAAdapter.Compose(logits, bank, 1);
        TensorAssert.Equal(torch.tensor(new float[] { 1, 0 }), top1);
    }

    [Fact]
    public void TheHandComputedExampleGivesBTimesA()
    {
        // in = out = L = 2, N = 2, r = 1, V = I₂: ℓ_A = [[[2, 0]]] ⇒ A = [[a, b]], ℓ_B = [[[0, 2]]] ⇒ B = [[b], [a]] with
        // a = e²/(e² + 1) = 0.880797, b = 1 − a = 0.119203 ⇒ ΔW = [[ab, b²], [a², ab]] = [[0.104994, 0.014209], [0.775803, 0.104994]].
        var layer = AdaptedLinear.Wrap(nn.Linear(2, 2), "q_proj").WithVBLoRA("default", new VBLoRAOptions(Rank: 1, NumVectors: 2, VectorLength: 2));
        var v = (VBLoRAAdapter)layer.GetAdapter("default");
        v.Bind(Bank(new float[] { 1, 0, 0, 1 }, 2, 2));
        Set(v.LogitsA, new float[] { 2, 0 });
        Set(v.LogitsB, new float[] { 0, 2 });
        Set(layer.Weight, new float[] { 1, 0, 0, 1 });
        Set(layer.Bias!, new float[] { 0, 0 });
        using (var delta = v.DeltaWeight())
        {
            TensorAssert.Close(torch.tensor(new float[] { 0.1049936f, 0.0142093f, 0.7758035f, 0.1049936f }, new long[] { 2, 2 }), delta, 1e-6);
        }

        // x = [1, 1]: y = x + ΔW x = [1 + b(a + b), 1 + a(a + b)] = [1.119203, 1.880797].
        using var x = torch.tensor(new float[] { 1, 1 }, new long[] { 1, 2 });
        using var y = layer.call(x);
        TensorAssert.Close(torch.tensor(new float[] { 1.1192029f, 1.8807971f }, new long[] { 1, 2 }), y, 1e-6);
    }

    [Fact]
    public void ANewAdapterIsPeftsInitCountsItsLogitsAndSharesOneTrainableBank()
    {
        var (model, adapters) = TwoLayers(new VBLoRAOptions(Rank: 3, NumVectors: 5, VectorLength: 4, InitVectorBankBound: 0.5));
        var fc2 = adapters[1];
        Assert.Equal(new[] { "vblora_logits_A", "vblora_logits_B" }, fc2.PeftTensors().Select(t => t.PeftName));
        Assert.Equal(new long[] { 3, 1, 5 }, fc2.LogitsA.shape);      // [r, in/L, N]
        Assert.Equal(new long[] { 3, 3, 5 }, fc2.LogitsB.shape);      // [out/L, r, N]
        Assert.Equal(VBLoRARules.ParameterCount(4, 12, 3, 5, 4), fc2.TrainableParameterCount);
        Assert.Equal((3 * 5) + (3 * 3 * 5), fc2.TrainableParameterCount);

        var bank = fc2.Bank;
        Assert.Same(bank, adapters[0].Bank);
        Assert.Equal(new long[] { 5, 4 }, bank.shape);
        Assert.True(bank.abs().max().item<float>() <= 0.5f);
        Assert.True(bank.abs().max().item<float>() > 0);
        var trainable = model.TrainableParameters().ToList();
        Assert.Equal(5, trainable.Count);                              // 2 × 2 logits, 1 bank
        Assert.Single(trainable, p => ReferenceEquals(p, bank));
        Assert.Equal("base_model.vblora_vector_bank.default", Assert.Single(model.SharedParameters()).Name);
        Assert.Equal(adapters.Sum(a => a.TrainableParameterCount) + (5 * 4), model.GetTrainableSummary().TrainableParameters);

        // PEFT's init is not the identity: random logits mix a random bank.
        using var delta = fc2.DeltaWeight();
        Assert.True(delta.abs().max().item<float>() > 0);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    public void TheFactorsAreTheEntryByEntryMixturesInPeftsReshapeOrders(int topK)
    {
        var (_, adapters) = TwoLayers(new VBLoRAOptions(Rank: 3, NumVectors: 5, VectorLength: 4, TopK: topK), ScalarType.Float64);
        foreach (var a in adapters)
        {
            var (expectedA, expectedB) = FactorsByEntries(a);
            using (var factorA = a.FactorA()) TensorAssert.Close(expectedA, factorA, 1e-12);
            using (var factorB = a.FactorB()) TensorAssert.Close(expectedB, factorB, 1e-12);
            using var delta = a.DeltaWeight();
            using var dense = expectedB.matmul(expectedA);
            TensorAssert.Close(dense, delta, 1e-12);

            using var x = torch.randn(new long[] { 3, 2, a.InFeatures }, dtype: ScalarType.Float64, generator: new Generator(4));
            using var output = torch.zeros(3, 2, a.OutFeatures, dtype: ScalarType.Float64);
            using (torch.no_grad()) a.AddTo(x, output);
            using var expected = x.matmul(dense.t());
            TensorAssert.Close(expected, output, 1e-12);
        }
    }

    [Fact]
    public void TheLogitsAndTheSharedBankGetTheEntryByEntryGradientsFromEveryLayer()
    {
        var (_, adapters) = TwoLayers(new VBLoRAOptions(Rank: 2, NumVectors: 6, VectorLength: 4, TopK: 3), ScalarType.Float64);
        using var x1 = torch.randn(new long[] { 5, 8 }, dtype: ScalarType.Float64, generator: new Generator(9));
        using var x2 = torch.randn(new long[] { 5, 4 }, dtype: ScalarType.Float64, generator: new Generator(10));
        Tensor Loss(Func<VBLoRAAdapter, Tensor> delta)
        {
            using var d1 = delta(adapters[0]);
            using var d2 = delta(adapters[1]);
            using var y1 = x1.matmul(d1.t());
            using var y2 = x2.matmul(d2.t());
            return y1.pow(2).sum() + y2.pow(3).sum();
        }

        var parameters = adapters.SelectMany(a => new[] { a.LogitsA, a.LogitsB }).Append(adapters[0].Bank).ToList();
        // The adapter's own forward (AddTo) against the entry-by-entry dense update.
        Tensor Forward(VBLoRAAdapter a, Tensor x)
        {
            var output = torch.zeros(x.shape[0], a.OutFeatures, dtype: ScalarType.Float64);
            a.AddTo(x, output);
            return output;
        }

        using (var y1 = Forward(adapters[0], x1))
        using (var y2 = Forward(adapters[1], x2))
        using (var loss = y1.pow(2).sum() + y2.pow(3).sum())
        {
            loss.backward();
        }

        var actual = parameters.Select(p => p.grad!.clone()).ToList();
        foreach (var p in parameters) p.grad!.zero_();
        using (var loss = Loss(a =>
        {
            var (fa, fb) = FactorsByEntries(a);
            return fb.matmul(fa);
        }))
        {
            loss.backward();
        }

        for (int i = 0; i < parameters.Count; i++) TensorAssert.Close(parameters[i].grad!, actual[i], 1e-10);
        Assert.True(actual[^1].abs().sum().item<double>() > 0);
    }

    [Fact]
    public void MergeEqualsTheUnmergedForwardAndUnmergeRestoresTheBase()
    {
        var (model, adapters) = TwoLayers(new VBLoRAOptions(Rank: 2, NumVectors: 6, VectorLength: 4));
        using (torch.no_grad()) adapters[0].Bank.mul_(20);                    // updates of order 1
        var layers = model.named_children().Select(c => (AdaptedLinear)c.module).ToList();
        var originals = layers.Select(l => l.Weight.detach().clone()).ToList();
        using var x = torch.randn(new long[] { 4, 8 }, generator: new Generator(2));
        using var unmerged = model.call(x);
        model.Merge();
        for (int k = 0; k < 2; k++)
        {
            using var delta = adapters[k].DeltaWeight();
            using var expected = originals[k] + delta;
            TensorAssert.Close(expected, layers[k].Weight, 1e-6);
        }

        using (var merged = model.call(x)) TensorAssert.Close(unmerged, merged, 1e-5);
        model.Unmerge();
        for (int k = 0; k < 2; k++) TensorAssert.Close(originals[k], layers[k].Weight, 1e-6);
    }

    [Fact]
    public void AVectorLengthThatDoesNotDivideOrATopKAboveTheBankIsRefusedNamingTheMemberAndTheFix()
    {
        var ex = Assert.Throws<PeftConfigurationException>(() => AdaptedLinear.Wrap(nn.Linear(8, 6), "v_proj").WithVBLoRA("default", new VBLoRAOptions(VectorLength: 4)));
        Assert.Contains("'v_proj'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("VectorLength 4 must divide both in_features 8 and out_features 6", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Use a common divisor", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<PeftConfigurationException>(() => AdaptedLinear.Wrap(nn.Linear(8, 8), "q_proj").WithVBLoRA("default", new VBLoRAOptions(NumVectors: 2, VectorLength: 4, TopK: 3)));
        Assert.Contains("TopK must be between 1 and NumVectors (2), got 3", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnAdamStepOnTheSharedBankMovesEveryLayersUpdate()
    {
        var (model, adapters) = TwoLayers(new VBLoRAOptions(Rank: 2, NumVectors: 6, VectorLength: 4));
        var parameters = model.TrainableParameters().ToList();
        using var before1 = adapters[0].DeltaWeight();
        using var before2 = adapters[1].DeltaWeight();
        using var optimizer = torch.optim.Adam(parameters, 0.01);
        using var x = torch.randn(new long[] { 3, 8 }, generator: new Generator(1));
        using (var loss = model.call(x).pow(2).sum()) loss.backward();
        foreach (var p in parameters.Where(p => !ReferenceEquals(p, adapters[0].Bank))) p.grad!.zero_(); // only the bank moves
        optimizer.step();
        using var after1 = adapters[0].DeltaWeight();
        using var after2 = adapters[1].DeltaWeight();
        TensorAssert.NotClose(before1, after1, 1e-6);
        TensorAssert.NotClose(before2, after2, 1e-6);
    }
}
