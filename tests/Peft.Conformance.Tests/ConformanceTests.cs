using System.Text.Json.Nodes;
using Peft.Cli;
using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Conformance.Tests;

/// <summary>
/// The conformance matrix (issue 8 §5, modelled on PEFT's custom-model test cases): every row of every method runs the same
/// checks on <see cref="TinyModel"/>. A new method joins by adding rows.
/// </summary>
[Collection(nameof(TorchSharpGlobalState))]
public sealed class ConformanceTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-conformance-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (DirectoryNotFoundException) { }
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void ANewAdapterLeavesTheOutputsAsItsInitSays(string name)
    {
        var row = ConformanceMatrix.Get(name);
        using var model = new TinyModel();
        model.eval();
        using var before = model.call(Ids());
        Apply(model, row);
        using var after = model.call(Ids());
        if (row.IdentityAtInit)
        {
            Assert.Equal(before.shape, after.shape);
            Assert.True(MaxDiff(before, after) <= 1e-6, $"{name}: a new adapter changed the outputs by {MaxDiff(before, after)}");
        }
        else
        {
            Assert.False(before.shape.SequenceEqual(after.shape) && MaxDiff(before, after) == 0, $"{name}: documented as changing the outputs at init, but did not");
        }
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void OnlyAdapterParametersTrainAndAllOfThemGetGradients(string name)
    {
        var row = ConformanceMatrix.Get(name);
        using var model = new TinyModel();
        Apply(model, row);
        var trainable = model.TrainableParameters().ToList();
        // By reference: Tensor.Equals compares values, and an LN-tuning copy starts equal to its norm. An adapter's frozen
        // tensors (SVFit's singular vectors) are adapter parameters that never train.
        var frozen = new HashSet<Tensor>(model.AdaptedLayers().SelectMany(l => l.Layer.Adapters).SelectMany(a => a.FrozenParameters()), ReferenceEqualityComparer.Instance);
        var adapter = new HashSet<Tensor>(model.AdapterParameters().Where(p => !frozen.Contains(p)), ReferenceEqualityComparer.Instance);
        Assert.NotEmpty(trainable);
        Assert.Equal(adapter.Count, trainable.Count);
        Assert.All(trainable, p => Assert.Contains(p, adapter));

        Randomize(model);
        model.train();
        using var loss = model.call(Ids()).pow(2).mean();
        loss.backward();
        foreach (var p in trainable)
        {
            Assert.NotNull(p.grad);
            Assert.True(p.grad!.abs().sum().item<float>() > 0, $"{name}: an adapter parameter of shape [{string.Join(", ", p.shape)}] got a zero gradient");
        }
        foreach (var p in model.parameters().Where(p => !adapter.Contains(p)))
        {
            Assert.Null(p.grad);
        }
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void MergedForwardEqualsUnmergedAndUnmergeRestoresTheBase(string name)
    {
        var row = ConformanceMatrix.Get(name);
        using var model = new TinyModel();
        Apply(model, row);
        row.BeforeMerge?.Invoke(model);
        Randomize(model);
        model.eval();
        var original = BaseParameters(model).Select(p => (p.Key, Value: p.Value.detach().clone())).ToList();
        using var unmerged = model.call(Ids());
        model.Merge();
        using var merged = model.call(Ids());
        Assert.True(MaxDiff(unmerged, merged) <= row.MergeTolerance, $"{name}: merged forward differs by {MaxDiff(unmerged, merged)}");
        bool changed = original.Any(o => MaxDiff(o.Value, BaseParameters(model)[o.Key]) > 0);
        Assert.Equal(row.Mergeable, changed);

        model.Unmerge();
        foreach (var (key, value) in original)
        {
            double diff = MaxDiff(value, BaseParameters(model)[key]);
            Assert.True(diff <= row.UnmergeTolerance, $"{name}: unmerge left {key} off by {diff}");
        }
        using var again = model.call(Ids());
        Assert.True(MaxDiff(unmerged, again) <= row.MergeTolerance);
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void SaveAndLoadIsBitwise(string name)
    {
        var row = ConformanceMatrix.Get(name);
        using var model = new TinyModel();
        Apply(model, row);
        Randomize(model);
        model.eval();
        AdapterFiles.Save(model, _dir);

        using var fresh = new TinyModel();
        fresh.eval();
        if (row.CalibrationRewritesBase) Apply(fresh, row);   // a calibrated adapter is loaded into, never created by the load
        AdapterFiles.Load(fresh, _dir);   // creates the adapter from the config, then loads the tensors
        if (row.FileHoldsComputedTensors)
        {
            string again = Path.Combine(_dir, "again");
            AdapterFiles.Save(fresh, again);
            using var first = SafetensorsFile.Open(Path.Combine(_dir, AdapterFiles.WeightsFileName));
            using var second = SafetensorsFile.Open(Path.Combine(again, AdapterFiles.WeightsFileName));
            Assert.Equal(first.Tensors.Select(t => t.Name), second.Tensors.Select(t => t.Name));
            foreach (var info in first.Tensors)
            {
                using var a = first.ReadTensor(info.Name);
                using var b = second.ReadTensor(info.Name);
                Assert.True(a.eq(b).all().item<bool>(), $"{name}: {info.Name} differs when the loaded adapter is saved again");
            }

            using var z0 = model.call(Ids());
            using var z1 = fresh.call(Ids());
            Assert.True(z0.eq(z1).all().item<bool>(), $"{name}: outputs differ after the round trip ({MaxDiff(z0, z1)})");
            return;
        }

        var expected = model.AdapterParameters();
        var actual = fresh.AdapterParameters();
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.True(expected[i].eq(actual[i]).all().item<bool>(), $"{name}: parameter {i} differs after the round trip");
        using var y0 = model.call(Ids());
        using var y1 = fresh.call(Ids());
        Assert.True(y0.eq(y1).all().item<bool>(), $"{name}: outputs differ after the round trip ({MaxDiff(y0, y1)})");
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void TheFileHasExactlyPeftsKeysAndConfigFields(string name)
    {
        var row = ConformanceMatrix.Get(name);
        using var model = new TinyModel();
        Apply(model, row);
        AdapterFiles.Save(model, _dir);

        using var reader = SafetensorsFile.Open(Path.Combine(_dir, AdapterFiles.WeightsFileName));
        Assert.Equal(row.ExpectedKeys.OrderBy(k => k, StringComparer.Ordinal), reader.Tensors.Select(t => t.Name).OrderBy(k => k, StringComparer.Ordinal));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal(row.ConfigKeys.OrderBy(k => k, StringComparer.Ordinal), config.Select(p => p.Key).OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, value) in row.ExpectedConfig)
        {
            Assert.True(JsonNode.DeepEquals(value, config[key]), $"{name}: {key} is {config[key]?.ToJsonString() ?? "null"}, expected {value?.ToJsonString() ?? "null"}");
        }
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void FileLevelMergeRunsTheModelsMath(string name)
    {
        var row = ConformanceMatrix.Get(name);
        using var model = new TinyModel();
        string basePath = Path.Combine(_dir, "base.safetensors");
        ModelWeights.Save(model, basePath);
        Apply(model, row);
        row.BeforeMerge?.Invoke(model);
        if (row.CalibrationRewritesBase) ModelWeights.Save(model, basePath);   // the residual base: peft merge cannot calibrate
        Randomize(model);
        model.eval();
        string adapterDir = Path.Combine(_dir, "adapter");
        AdapterFiles.Save(model, adapterDir);
        string mergedPath = Path.Combine(_dir, "merged.safetensors");
        if (!row.Mergeable)
        {
            Assert.Throws<CliException>(() => AdapterMerger.Merge(basePath, adapterDir, mergedPath));
            return;
        }

        AdapterMerger.Merge(basePath, adapterDir, mergedPath);
        model.Merge();
        using var expected = model.call(Ids());
        using var plain = new TinyModel(seed: 99);
        plain.eval();
        ModelWeights.Load(plain, mergedPath);
        using var actual = plain.call(Ids());
        var mergedParams = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        var detail = string.Join("; ", plain.named_parameters().Where(p => mergedParams.ContainsKey(p.name)).Select(p => $"{p.name} {MaxDiff(mergedParams[p.name], p.parameter):G3}"));
        Assert.True(MaxDiff(expected, actual) <= row.MergeTolerance, $"{name}: peft merge's weights differ from the model's merge by {MaxDiff(expected, actual)} ({detail})");
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void AMergedExportRecordsItsAdapterAndRefusesItAgain(string name)
    {
        var row = ConformanceMatrix.Get(name);
        using var model = new TinyModel();
        string basePath = Path.Combine(_dir, "base.safetensors");
        ModelWeights.Save(model, basePath);
        Apply(model, row);
        row.BeforeMerge?.Invoke(model);
        if (row.CalibrationRewritesBase) ModelWeights.Save(model, basePath);
        Randomize(model);
        string adapterDir = Path.Combine(_dir, "adapter");
        AdapterFiles.Save(model, adapterDir);

        // One fingerprint for the adapter, whether taken from the model or from its file.
        string fingerprint = MergedAdapterMetadata.Fingerprint(model, AdapterNames.Default);
        using (var file = SafetensorsFile.Open(Path.Combine(adapterDir, AdapterFiles.WeightsFileName)))
        {
            var method = PeftMethods.ForConfig(AdapterConfig.Read(Path.Combine(adapterDir, AdapterFiles.ConfigFileName)));
            Assert.Equal(fingerprint, MergedAdapterMetadata.Fingerprint(file, method));
        }
        if (!row.Mergeable) return;

        // The model's export and peft merge's output record the same adapter, and the base they give refuses it.
        model.Merge();
        string exported = Path.Combine(_dir, "exported.safetensors"), merged = Path.Combine(_dir, "merged.safetensors");
        ModelWeights.Save(model, exported);
        AdapterMerger.Merge(basePath, adapterDir, merged);
        foreach (var path in new[] { exported, merged })
        {
            using (var reader = SafetensorsFile.Open(path))
            {
                var record = Assert.Single(MergedAdapterMetadata.Read(reader));
                Assert.Equal((AdapterNames.Default, row.Options.Method.PeftType, fingerprint), (record.Name, record.PeftType, record.Sha256));
            }

            using var fresh = new TinyModel(seed: 99);
            ModelWeights.Load(fresh, path);
            var ex = Assert.Throws<AdapterAlreadyMergedException>(() => AdapterFiles.Load(fresh, adapterDir));
            Assert.Contains(path, ex.Message, StringComparison.Ordinal);
            Assert.Empty(fresh.AdapterNames());   // refused before the adapter was created
        }
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public void TheGeneratedCodeMatchesItsSnapshot(string name)
    {
        var row = ConformanceMatrix.Get(name);
        Snapshot.Match(RoslynHarness.Generate(RoslynHarness.Source(row.Attribute, row.AttributeLayer)), name + ".g.cs");
    }

    [Theory]
    [MemberData(nameof(ConformanceMatrix.Names), MemberType = typeof(ConformanceMatrix))]
    public async Task TheAnalyzersRejectBadArguments(string name)
    {
        var row = ConformanceMatrix.Get(name);
        Assert.Empty(await RoslynHarness.DiagnosticIds(RoslynHarness.Source(row.Attribute, row.AttributeLayer)));
        foreach (var (attribute, layer, ids) in row.BadAttributes)
        {
            Assert.Equal(ids, await RoslynHarness.DiagnosticIds(RoslynHarness.Source(attribute, layer)));
        }
    }

    internal static Tensor Ids() => torch.tensor(new long[] { 1, 4, 7, 19, 0, 3, 3, 12, 5, 8 }, new long[] { 2, 5 });

    private static void Apply(TinyModel model, ConformanceCase row)
    {
        model.ApplyTargets(new PeftTargets(TargetModules.Names(row.Targets), row.Options));
        row.Calibrate?.Invoke(model);
    }

    /// <summary>Moves every adapter parameter away from its init (deterministically), so updates are non-trivial.</summary>
    private static void Randomize(TinyModel model)
    {
        using var noGrad = torch.no_grad();
        var generator = new Generator(1234);
        foreach (var p in model.AdapterParameters())
        {
            using var noise = torch.randn(p.shape, generator: generator) * 0.2;
            p.add_(noise);
        }
    }

    private static Dictionary<string, Tensor> BaseParameters(TinyModel model)
    {
        // By reference: Tensor.Equals compares values, and a merged LN-tuning norm holds the adapter's values.
        var adapter = new HashSet<Tensor>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        return model.named_parameters().Where(p => !adapter.Contains(p.parameter)).ToDictionary(p => p.name, p => (Tensor)p.parameter);
    }

    private static double MaxDiff(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return double.PositiveInfinity;
        using var d = (a - b).abs().max();
        return d.ToDouble();
    }
}

/// <summary>TorchSharp's random generator is global: classes that seed it run one at a time.</summary>
[CollectionDefinition(nameof(TorchSharpGlobalState), DisableParallelization = true)]
public sealed class TorchSharpGlobalState
{
}
