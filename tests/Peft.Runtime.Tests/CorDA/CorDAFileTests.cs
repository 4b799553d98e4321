using System.Text.Json.Nodes;
using Peft.Runtime.Tests.Core;
using Peft.Runtime.Tests.Serialization;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.CorDA;

/// <summary>
/// CorDA's files: the covariance and cache files (PEFT's covariance_file and cache_file; reused without calibration data, refused
/// naming the file and the layer when built for another rank, mode or weight, or not a CorDA file), and the adapter file
/// (init_lora_weights "corda" with PEFT's corda_config fields, loaded into a calibrated adapter; a load that would create or
/// fill an uncalibrated CorDA adapter is refused, as is a malformed corda_config).
/// </summary>
public sealed class CorDAFileTests : IDisposable
{
    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Tensor Weight() => torch.randn(new long[] { 5, 6 }, generator: new Generator(41)) * 0.5;

    private static Tensor[] Calibration() => Enumerable.Range(0, 3).Select(i => torch.randn(new long[] { 4, 6 }, generator: new Generator((ulong)(50 + i)))).ToArray();

    private static CordaHolder Calibrated(Tensor w, LoRAOptions options, CorDASettings? settings = null, bool feed = true)
    {
        var model = new CordaHolder(w, options);
        var calls = Calibration();
        model.PreprocessCorDA(feed ? CorDATests.Feed(model, calls) : null, settings);
        foreach (var c in calls) c.Dispose();
        return model;
    }

    [Fact]
    public void TheCacheAndCovarianceFilesReplaceTheCalibrationData()
    {
        using var w = Weight();
        var options = new LoRAOptions(Rank: 2, Alpha: 4, Init: LoRAInit.CorDA);
        string cache = _dir.File("corda/cache.safetensors"), covariance = _dir.File("corda/cov.safetensors");
        using var first = Calibrated(w, options, new CorDASettings(cache, covariance));
        Assert.True(File.Exists(cache) && File.Exists(covariance));

        // The cache alone gives the same adapter and residual, with no calibration data.
        using var fromCache = Calibrated(w, options, new CorDASettings(CacheFile: cache), feed: false);
        TensorAssert.Close(first.Adapter.A, fromCache.Adapter.A, 0);
        TensorAssert.Close(first.Adapter.B, fromCache.Adapter.B, 0);
        TensorAssert.Close(first.Layer.Weight, fromCache.Layer.Weight, 0);

        // The covariance serves another rank and mode.
        using var kpm = Calibrated(w, options with { Rank = 3, CorDAMethod = CorDAMethod.Kpm }, new CorDASettings(CovarianceFile: covariance), feed: false);
        using var reference = Calibrated(w, options with { Rank = 3, CorDAMethod = CorDAMethod.Kpm });
        TensorAssert.Close(reference.Layer.Weight, kpm.Layer.Weight, 1e-6);

        // A cache for another rank, mode or weight is refused naming the file and the layer; the model is unchanged.
        foreach (var (other, what) in new[] { (options with { Rank = 3 }, "rank"), (options with { CorDAMethod = CorDAMethod.Kpm }, "corda_method") })
        {
            using var model = new CordaHolder(w, other);
            var ex = Assert.Throws<AdapterFormatException>(() => model.PreprocessCorDA(null, new CorDASettings(CacheFile: cache)));
            Assert.Contains(Path.GetFullPath(cache), ex.Message, StringComparison.Ordinal);
            Assert.Contains("'q_proj'", ex.Message, StringComparison.Ordinal);
            Assert.Contains(what, ex.Message, StringComparison.Ordinal);
            Assert.True(model.Adapter.AwaitsCalibration);
            TensorAssert.Close(w, model.Layer.Weight, 0);
        }

        using var otherWeight = w * 2;
        using var foreign = new CordaHolder(otherWeight, options);
        var weightEx = Assert.Throws<AdapterFormatException>(() => foreign.PreprocessCorDA(null, new CorDASettings(CacheFile: cache)));
        Assert.Contains("another base weight", weightEx.Message, StringComparison.Ordinal);

        // A covariance file given as the cache (or any other safetensors file) is refused by its format; a corrupt one too.
        var wrongKind = Assert.Throws<AdapterFormatException>(() => foreign.PreprocessCorDA(null, new CorDASettings(CacheFile: covariance)));
        Assert.Contains("not a CorDA cache file", wrongKind.Message, StringComparison.Ordinal);
        string corrupt = _dir.File("corrupt.safetensors");
        File.WriteAllBytes(corrupt, new byte[] { 200, 0, 0, 0, 0, 0, 0, 0, (byte)'{' });
        var bad = Assert.ThrowsAny<PeftFileException>(() => foreign.PreprocessCorDA(null, new CorDASettings(CovarianceFile: corrupt)));
        Assert.Contains(corrupt, bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheAdapterFileHasPeftsCordaConfigAndLoadsIntoACalibratedAdapter()
    {
        using var w = Weight();
        var options = new LoRAOptions(Rank: 2, Alpha: 4, Init: LoRAInit.CorDA, CorDAMethod: CorDAMethod.Kpm);
        using var trained = Calibrated(w, options);
        using (torch.no_grad()) trained.Adapter.B.add_(0.05);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(trained, dir);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("corda", config["init_lora_weights"]!.GetValue<string>());
        var expected = new JsonObject
        {
            ["cache_file"] = null, ["corda_method"] = "kpm", ["covariance_file"] = null,
            ["prune_temporary_fields"] = true, ["use_float16_for_covariance"] = false, ["verbose"] = false,
        };
        Assert.True(JsonNode.DeepEquals(expected, config["corda_config"]), config["corda_config"]?.ToJsonString());

        // Into a model calibrated the same way: the same outputs, bit for bit.
        using var fresh = Calibrated(w, options);
        AdapterFiles.Load(fresh, dir);
        using var x = torch.randn(new long[] { 3, 6 }, generator: new Generator(7));
        using var y0 = trained.call(x);
        using var y1 = fresh.call(x);
        Assert.True(y0.eq(y1).all().item<bool>());

        // Into an uncalibrated adapter, or a load that would create one: refused naming the file and the fix.
        using var waiting = new CordaHolder(w, options);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(waiting, dir));
        Assert.Contains(Path.Combine(dir, AdapterFiles.ConfigFileName), ex.Message, StringComparison.Ordinal);
        Assert.Contains("PreprocessCorDA", ex.Message, StringComparison.Ordinal);
        using var bare = new CordaHolder(w, null);
        var create = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(bare, dir, "other"));
        Assert.Contains("calibration data", create.Message, StringComparison.Ordinal);
        Assert.Empty(bare.AdapterNames());
        TensorAssert.Close(w, bare.Layer.Weight, 0);

        // Into a calibrated adapter of another mode: the residuals differ, refused by the setting check.
        using var ipm = Calibrated(w, options with { CorDAMethod = CorDAMethod.Ipm });
        Assert.ThrowsAny<Exception>(() => AdapterFiles.Load(ipm, dir));
    }

    [Theory]
    [InlineData("{\"corda_method\": \"xpm\"}", "\"corda_method\" must be \"ipm\" or \"kpm\"")]
    [InlineData("{\"corda_method\": \"ipm\", \"verbose\": \"yes\"}", "\"verbose\" must be true or false")]
    [InlineData("{\"cache_file\": 3}", "\"cache_file\" must be a string")]
    [InlineData("[1]", "must be an object")]
    public void AMalformedCordaConfigIsRefusedNamingTheField(string corda, string problem)
    {
        using var w = Weight();
        using var trained = Calibrated(w, new LoRAOptions(Rank: 2, Init: LoRAInit.CorDA));
        string dir = _dir.File("bad");
        AdapterFiles.Save(trained, dir);
        string path = Path.Combine(dir, AdapterFiles.ConfigFileName);
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["corda_config"] = JsonNode.Parse(corda);
        File.WriteAllText(path, config.ToJsonString());
        using var fresh = Calibrated(w, new LoRAOptions(Rank: 2, Init: LoRAInit.CorDA));
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, dir));
        Assert.Contains("corda_config", ex.Message, StringComparison.Ordinal);
        Assert.Contains(problem, ex.Message, StringComparison.Ordinal);
    }
}
