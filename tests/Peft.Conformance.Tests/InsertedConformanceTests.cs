using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Conformance.Tests;

/// <summary>
/// The conformance matrix's inserted-adapter part (<see cref="InsertedConformanceCase"/>): every row runs the same checks
/// on <see cref="TinyStack"/>.
/// </summary>
[Collection(nameof(TorchSharpGlobalState))]
public sealed class InsertedConformanceTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-inserted-conformance-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (DirectoryNotFoundException) { }
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.InsertedNames), MemberType = typeof(ConformanceMatrix))]
    public void ANewAdapterLeavesTheOutputsAsItsInitSaysAndDisablingGivesTheBase(string name)
    {
        var row = ConformanceMatrix.GetInserted(name);
        using var model = new TinyStack();
        using var before = model.call(Ids());
        row.Insert(model);
        Assert.NotEmpty(model.InsertedAdapters());
        using var after = model.call(Ids());
        double init = MaxDiff(before, after);
        if (row.IdentityAtInit) Assert.True(init == 0, $"{name}: a new adapter changed the outputs by {init}");
        else if (row.InitTolerance is { } tolerance) Assert.True(init <= tolerance, $"{name}: a new adapter moved the outputs by {init}, more than {tolerance}");
        else Assert.True(init > 0, $"{name}: documented as changing the outputs at init, but did not");

        Randomize(model);
        using (model.DisableAdapters())
        {
            using var disabled = model.call(Ids());
            Assert.True(MaxDiff(before, disabled) == 0, $"{name}: disabled adapters changed the outputs by {MaxDiff(before, disabled)}");
        }

        using var enabled = model.call(Ids());
        Assert.True(MaxDiff(before, enabled) > 0, $"{name}: trained adapters do not reach the outputs");
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.InsertedNames), MemberType = typeof(ConformanceMatrix))]
    public void OnlyInsertedParametersTrainAndAllOfThemGetGradients(string name)
    {
        var row = ConformanceMatrix.GetInserted(name);
        using var model = new TinyStack();
        row.Insert(model);
        var trainable = model.TrainableParameters().ToList();
        var expected = new HashSet<Tensor>(model.InsertedAdapters().SelectMany(a => a.Adapter.parameters()), ReferenceEqualityComparer.Instance);
        foreach (var (_, p) in model.SharedParameters()) expected.Add(p);
        Assert.Equal(expected.Count, trainable.Count);
        Assert.All(trainable, p => Assert.Contains(p, expected));

        Randomize(model);
        using (var loss = model.call(Ids()).pow(2).mean()) loss.backward();
        foreach (var p in trainable)
        {
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name}: a parameter of shape [{string.Join(", ", p.shape)}] got no gradient");
        }

        Assert.All(model.parameters().Where(p => !expected.Contains(p)), p => Assert.Null(p.grad));
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.InsertedNames), MemberType = typeof(ConformanceMatrix))]
    public void MergeIsRefusedAndLeavesTheModelUnchanged(string name)
    {
        var row = ConformanceMatrix.GetInserted(name);
        using var model = new TinyStack();
        row.Insert(model);
        Randomize(model);
        using var before = model.call(Ids());
        var ex = Assert.Throws<PeftConfigurationException>(() => model.Merge());
        // The refusal names an inserted adapter where it lives.
        Assert.Contains(model.InsertedAdapters().Select(a => $"'{a.Path}'"), path => ex.Message.Contains(path, StringComparison.Ordinal));
        using var after = model.call(Ids());
        Assert.True(before.eq(after).all().item<bool>());
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.InsertedNames), MemberType = typeof(ConformanceMatrix))]
    public void SaveAndLoadIsBitwiseWithExactlyTheDocumentedKeysAndFields(string name)
    {
        var row = ConformanceMatrix.GetInserted(name);
        using var model = new TinyStack();
        row.Insert(model);
        Randomize(model);
        row.Save(model, _dir);

        using (var reader = SafetensorsFile.Open(Path.Combine(_dir, row.WeightsFile)))
        {
            Assert.Equal(row.ExpectedKeys.Order(StringComparer.Ordinal), reader.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        }

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, row.ConfigFile)))!.AsObject();
        Assert.Equal(row.ConfigKeys.Order(StringComparer.Ordinal), config.Select(p => p.Key).Order(StringComparer.Ordinal));
        foreach (var (key, value) in row.ExpectedConfig)
        {
            Assert.True(JsonNode.DeepEquals(value, config[key]), $"{name}: {key} is {config[key]?.ToJsonString()}, expected {value?.ToJsonString()}");
        }

        using var fresh = new TinyStack();
        row.Load(fresh, _dir);
        var expected = Saved(row, model);
        var actual = Saved(row, fresh);
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.True(expected[i].eq(actual[i]).all().item<bool>(), $"{name}: parameter {i} differs after the round trip");
        using var y0 = model.call(Ids());
        using var y1 = fresh.call(Ids());
        Assert.True(y0.eq(y1).all().item<bool>(), $"{name}: outputs differ after the round trip ({MaxDiff(y0, y1)})");
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.InsertedMergeableNames), MemberType = typeof(ConformanceMatrix))]
    public void OwnMergeEqualsTheUnmergedModelAndUnmergeRestoresTheBaseBitwise(string name)
    {
        var row = ConformanceMatrix.GetInserted(name);
        using var model = new TinyStack();
        var baseWeights = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        row.Insert(model);
        Randomize(model);
        using var unmerged = model.call(Ids());
        row.OwnMerge!(model);
        Assert.Contains(baseWeights, p => !p.Value.eq(model.state_dict()[p.Key]).all().item<bool>());
        using (var merged = model.call(Ids()))
        {
            Assert.True(MaxDiff(unmerged, merged) < 1e-5, $"{name}: merged outputs differ by {MaxDiff(unmerged, merged)}");
        }

        row.OwnUnmerge!(model);
        foreach (var (key, value) in baseWeights)
        {
            Assert.True(value.eq(model.state_dict()[key]).all().item<bool>(), $"{name}: {key} not restored by unmerge");
        }

        using var again = model.call(Ids());
        Assert.True(unmerged.eq(again).all().item<bool>(), $"{name}: outputs after unmerge differ by {MaxDiff(unmerged, again)}");
    }

    /// <summary>What the row's file holds: its computed tensors, or the inserted and shared parameters.</summary>
    private static List<Tensor> Saved(InsertedConformanceCase row, nn.Module model)
    {
        if (row.SavedTensors is { } saved)
        {
            using var _ = no_grad();
            return [saved(model)];
        }

        return model.InsertedAdapters().SelectMany(a => a.Adapter.parameters()).Concat(model.SharedParameters().Select(s => s.Parameter)).Cast<Tensor>().ToList();
    }

    private static Tensor Ids() => torch.tensor(new long[] { 1, 4, 7, 19, 0, 3, 3, 12, 5, 8 }, new long[] { 2, 5 });

    /// <summary>Moves every inserted and shared parameter away from its init (a zero up projection would hide the rest).</summary>
    private static void Randomize(nn.Module model)
    {
        torch.manual_seed(99);
        using var _ = no_grad();
        foreach (var (_, adapter) in model.InsertedAdapters())
        {
            foreach (var p in adapter.parameters()) p.add_(torch.randn_like(p) * 0.3);
        }

        foreach (var (_, p) in model.SharedParameters()) p.add_(torch.randn_like(p) * 0.3);
    }

    private static double MaxDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }
}
