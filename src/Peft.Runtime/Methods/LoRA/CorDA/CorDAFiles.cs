using System.Globalization;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// CorDA's two reuse files (PEFT's <c>corda_config.covariance_file</c> and <c>cache_file</c>), written atomically as safetensors
/// with the keys of PEFT's dictionaries: the covariance file holds <c>{layer}</c> → <c>C</c> <c>[in, in]</c> (already divided by
/// the number of calibration calls), the cache file <c>{layer}.eigens.S_WC</c>, <c>.U_WC</c>, <c>.V_WC</c> (cropped to the
/// rank). PEFT pickles them with <c>torch.save</c>; these are this library's own files (metadata <c>format</c>
/// <see cref="CovarianceFormat"/> / <see cref="CacheFormat"/>), and the cache also records each layer's weight fingerprint, rank
/// and <c>corda_method</c>, so a cache built for another model, rank or mode is refused naming the file and the layer.
/// </summary>
public static class CorDAFiles
{
    /// <summary>The covariance file's <c>format</c> metadata.</summary>
    public const string CovarianceFormat = "peft-dotnet-corda-covariance";

    /// <summary>The cache file's <c>format</c> metadata.</summary>
    public const string CacheFormat = "peft-dotnet-corda-cache";

    /// <summary>Whether PEFT would read <paramref name="path"/>: it exists and is not empty.</summary>
    /// <param name="path">The path, or null.</param>
    /// <returns>True when the file should be read rather than built.</returns>
    public static bool Usable(string? path) => path is not null && File.Exists(path) && new FileInfo(path).Length > 0;

    /// <summary>Writes the covariances (atomically; the directory is created).</summary>
    /// <param name="path">The file.</param>
    /// <param name="covariances">Per layer path, <c>C</c> <c>[in, in]</c>.</param>
    public static void WriteCovariances(string path, IReadOnlyDictionary<string, Tensor> covariances)
    {
        ArgumentNullException.ThrowIfNull(covariances);
        Write(path, covariances.Select(c => new KeyValuePair<string, Tensor>(c.Key, c.Value)), new Dictionary<string, string> { ["format"] = CovarianceFormat });
    }

    /// <summary>Reads the covariances of <paramref name="layers"/> (path and input size).</summary>
    /// <param name="path">The file.</param>
    /// <param name="layers">The layers that need one.</param>
    /// <returns>Per layer path, <c>C</c> <c>[in, in]</c> in float32 (float64 when stored so); the caller disposes them.</returns>
    /// <exception cref="AdapterFormatException">The file is not a CorDA covariance file, or a layer is missing or mis-shaped.</exception>
    public static Dictionary<string, Tensor> ReadCovariances(string path, IReadOnlyList<(string Path, long In)> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        using var reader = Open(path, CovarianceFormat);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (layer, inFeatures) in layers.DistinctBy(l => l.Path))
            {
                result[layer] = Read(reader, layer, new[] { inFeatures, inFeatures }, $"the covariance of layer '{layer}'");
            }

            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>Writes the decompositions (atomically; the directory is created) with each layer's weight fingerprint, rank and mode.</summary>
    /// <param name="path">The file.</param>
    /// <param name="layers">Per layer path: its decomposition, the fingerprint of the weight it was computed from, and the mode.</param>
    public static void WriteCache(string path, IReadOnlyList<(string Path, CorDAEigens Eigens, BaseFingerprint Weight, CorDAMethod Method)> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        var metadata = new Dictionary<string, string> { ["format"] = CacheFormat };
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (layer, eigens, weight, method) in layers)
        {
            tensors.Add(new($"{layer}.eigens.S_WC", eigens.S));
            tensors.Add(new($"{layer}.eigens.U_WC", eigens.U));
            tensors.Add(new($"{layer}.eigens.V_WC", eigens.V));
            metadata[$"{layer}.corda_method"] = CorDAInitialization.PeftName(method);
            metadata[$"{layer}.weight"] = string.Create(CultureInfo.InvariantCulture, $"{weight.Sum:R},{weight.SumOfSquares:R},{weight.Count}");
        }

        Write(path, tensors, metadata);
    }

    /// <summary>Reads the decomposition of one layer from a cache, checking it was built for this weight, rank and mode.</summary>
    /// <param name="reader">The open cache (<see cref="OpenCache"/>).</param>
    /// <param name="layer">The layer path.</param>
    /// <param name="weight">The layer's current weight.</param>
    /// <param name="rank">The adapter's rank.</param>
    /// <param name="method">The adapter's mode.</param>
    /// <returns>The decomposition; the caller disposes it.</returns>
    /// <exception cref="AdapterFormatException">The layer is missing, or was cached for another weight, rank or mode.</exception>
    public static CorDAEigens ReadCache(SafetensorsReader reader, string layer, Tensor weight, int rank, CorDAMethod method)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(weight);
        string file = reader.Path;
        if (!reader.Metadata.TryGetValue($"{layer}.corda_method", out var stored))
            throw new AdapterFormatException($"{file}: the CorDA cache has no entry for layer '{layer}'; it was built for other layers. Delete it (or name another cache_file) to rebuild it from calibration data.");
        if (stored != CorDAInitialization.PeftName(method))
            throw new AdapterFormatException($"{file}: layer '{layer}' was cached with corda_method \"{stored}\", but its adapter uses \"{CorDAInitialization.PeftName(method)}\"; the cache keeps only that mode's components. Delete it to rebuild it.");
        var print = reader.Metadata.TryGetValue($"{layer}.weight", out var text) ? ParseFingerprint(text) : null;
        if (print is not { } recorded || !recorded.Matches(weight))
            throw new AdapterFormatException($"{file}: layer '{layer}' was cached for another base weight (its recorded fingerprint differs from the model's); load the base weights the cache was built from, or delete the cache to rebuild it.");
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        var s = Read(reader, $"{layer}.eigens.S_WC", new long[] { rank }, $"layer '{layer}''s S_WC (rank {rank}; was the cache built with another rank?)");
        var u = Read(reader, $"{layer}.eigens.U_WC", new[] { outFeatures, rank }, $"layer '{layer}''s U_WC");
        var v = Read(reader, $"{layer}.eigens.V_WC", new[] { inFeatures, rank }, $"layer '{layer}''s V_WC");
        return new CorDAEigens(s, u, v);
    }

    /// <summary>Opens a cache file, checking its format.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The reader; the caller disposes it.</returns>
    /// <exception cref="AdapterFormatException">The file is not a CorDA cache.</exception>
    public static SafetensorsReader OpenCache(string path) => Open(path, CacheFormat);

    private static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        SafetensorsFile.Write(path, tensors, metadata);
    }

    private static SafetensorsReader Open(string path, string format)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var reader = SafetensorsFile.Open(path);
        if (!reader.Metadata.TryGetValue("format", out var actual) || actual != format)
        {
            reader.Dispose();
            throw new AdapterFormatException(
                $"{Path.GetFullPath(path)}: not a CorDA {(format == CacheFormat ? "cache" : "covariance")} file (its safetensors metadata format is {(actual is null ? "missing" : $"\"{actual}\"")}, expected \"{format}\"). " +
                "PEFT's torch.save files cannot be read; delete the file or name another one to rebuild it from calibration data.");
        }

        return reader;
    }

    private static Tensor Read(SafetensorsReader reader, string key, long[] shape, string what)
    {
        if (!reader.Contains(key))
            throw new AdapterFormatException($"{reader.Path}: {what} is missing (no tensor '{key}'); the file was built for other layers. Delete it to rebuild it.");
        var info = reader.GetInfo(key);
        if (!info.Shape.SequenceEqual(shape))
            throw new AdapterFormatException($"{reader.Path}: {what} is [{string.Join(", ", info.Shape)}], the model needs [{string.Join(", ", shape)}]; the file was built for another model. Delete it to rebuild it.");
        var tensor = reader.ReadTensor(key);
        if (!tensor.is_floating_point() || !isfinite(tensor).all().item<bool>())
        {
            tensor.Dispose();
            throw new AdapterFormatException($"{reader.Path}: {what} ('{key}') is not a finite floating-point tensor.");
        }

        return tensor;
    }

    private static BaseFingerprint? ParseFingerprint(string text)
    {
        var parts = text.Split(',');
        return parts.Length == 3
            && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var sum)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var squares)
            && long.TryParse(parts[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out var count)
            ? new BaseFingerprint(sum, squares, count)
            : null;
    }
}
