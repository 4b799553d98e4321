using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>One adapter recorded as merged into a weights file (<see cref="MergedAdapterMetadata"/>).</summary>
/// <param name="Name">The adapter's name when it was merged (informative: a file may be merged under any name).</param>
/// <param name="PeftType">Its PEFT type (<c>LORA</c>, <c>LOKR</c>, ...).</param>
/// <param name="Sha256">The fingerprint of its tensors (<see cref="MergedAdapterMetadata.Fingerprint(SafetensorsReader, PeftMethod)"/>):
/// 64 lower-case hex digits. The same adapter has the same fingerprint in a file and in a model.</param>
public sealed record MergedAdapterRecord(string Name, string PeftType, string Sha256);

/// <summary>
/// An adapter was about to be loaded onto base weights that already contain it (merged), which would apply its update
/// twice. Nothing was loaded.
/// </summary>
public sealed class AdapterAlreadyMergedException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The message; it names the adapter and where the base weights came from.</param>
    /// <param name="adapterDirectory">The adapter directory that was being loaded.</param>
    /// <param name="baseWeightsSource">The file or directory the base weights were loaded from, or null when the adapter is
    /// merged into the model in memory.</param>
    /// <param name="record">The record of the merged adapter.</param>
    public AdapterAlreadyMergedException(string message, string adapterDirectory, string? baseWeightsSource, MergedAdapterRecord record)
        : base(message)
    {
        AdapterDirectory = adapterDirectory;
        BaseWeightsSource = baseWeightsSource;
        Record = record;
    }

    /// <summary>The adapter directory that was being loaded.</summary>
    public string AdapterDirectory { get; }

    /// <summary>The file or directory the model's base weights were loaded from; null when the adapter is merged in memory.</summary>
    public string? BaseWeightsSource { get; }

    /// <summary>The record of the merged adapter whose fingerprint the loaded adapter has.</summary>
    public MergedAdapterRecord Record { get; }
}

/// <summary>
/// Merged exports remember what they contain. A weights file written from a merged model (<see cref="ModelWeights.Save"/>,
/// <see cref="Peft.Checkpoints.HfCheckpoint.Save"/>, <c>peft merge</c>) records every adapter merged into it in its
/// safetensors metadata under <see cref="MetadataKey"/>: name, peft_type and a SHA-256 fingerprint of the adapter's tensors.
/// Loading base weights (<see cref="ModelWeights.Load"/>, <see cref="Peft.Checkpoints.HfCheckpoint.LoadInto"/>) makes the
/// model remember those records, and <see cref="AdapterFiles.Load"/> refuses an adapter whose fingerprint is among them (its
/// update is already in the weights; loading it would apply it twice) unless told otherwise.
/// </summary>
/// <remarks>
/// The metadata value is a JSON object: <c>{"adapters": [{"name": "default", "peft_type": "LORA", "sha256": "…"}]}</c>.
/// The fingerprint is the SHA-256 of the adapter's tensors under their PEFT keys
/// (<c>base_model.model.q_proj.lora_A.weight</c>, ..., and model-level ones such as VeRA's saved <c>base_model.vera_A</c>;
/// <c>modules_to_save</c> tensors are not part of it, since they
/// replace base tensors rather than add to them), in ordinal key order, each as its UTF-8 key, a 0 byte, its shape as
/// comma-separated decimal sizes, a 0 byte, and its values as little-endian float32 (whatever the stored dtype, so a
/// BF16 file and the F32 model it was loaded into agree).
/// </remarks>
public static class MergedAdapterMetadata
{
    /// <summary>The safetensors metadata key of the records.</summary>
    public const string MetadataKey = "peft_merged_adapters";

    private static readonly ConditionalWeakTable<nn.Module, Origin> s_origins = new();

    /// <summary>The fingerprint of adapter <paramref name="adapterName"/> of <paramref name="model"/> (its current values).</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>64 lower-case hex digits.</returns>
    /// <exception cref="PeftConfigurationException">The model has no such adapter, or it mixes methods.</exception>
    public static string Fingerprint(nn.Module model, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(adapterName);
        var layout = AdapterLayout.Collect(model, adapterName);
        return Hash(layout.FileTensors());
    }

    /// <summary>
    /// The fingerprint of the adapter in an <c>adapter_model.safetensors</c> file: its adapter tensors (keys with one of
    /// <paramref name="method"/>'s <see cref="PeftMethod.TensorNames"/>, and its model-level <see cref="PeftMethod.SharedTensorNames"/>;
    /// <c>modules_to_save</c> tensors are left out).
    /// </summary>
    /// <param name="adapterWeights">The open weights file.</param>
    /// <param name="method">The method of its config (<see cref="PeftMethods.ForConfig"/>).</param>
    /// <returns>64 lower-case hex digits.</returns>
    public static string Fingerprint(SafetensorsReader adapterWeights, PeftMethod method)
    {
        ArgumentNullException.ThrowIfNull(adapterWeights);
        ArgumentNullException.ThrowIfNull(method);
        var keys = adapterWeights.Tensors.Select(t => t.Name).Where(k => IsAdapterTensor(k, method));
        return Hash(keys.Select(k => (k, (Func<Tensor>)(() => adapterWeights.ReadTensor(k)))));
    }

    /// <summary>The records in a safetensors file's metadata (empty when it has none).</summary>
    /// <param name="file">The open file.</param>
    /// <returns>The records, in the order they were merged.</returns>
    /// <exception cref="SafetensorsFormatException">The metadata value is not a valid record list; names the file and the key.</exception>
    public static IReadOnlyList<MergedAdapterRecord> Read(SafetensorsReader file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return Parse(file.Metadata, file.Path);
    }

    /// <summary>The metadata value for <paramref name="records"/>.</summary>
    /// <param name="records">The records, in merge order.</param>
    /// <returns>The JSON text.</returns>
    public static string Format(IEnumerable<MergedAdapterRecord> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        var list = new JsonArray();
        foreach (var record in records)
        {
            list.Add(new JsonObject { ["name"] = record.Name, ["peft_type"] = record.PeftType, ["sha256"] = record.Sha256 });
        }

        return new JsonObject { ["adapters"] = list }.ToJsonString();
    }

    /// <summary>
    /// The adapters <paramref name="model"/>'s base weights contain: those recorded in the files its base weights were last
    /// loaded from (by <see cref="ModelWeights.Load"/> or <see cref="Peft.Checkpoints.HfCheckpoint.LoadInto"/>, into it or a
    /// submodule), then the adapters merged into it now. This is what an export of the model records.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <returns>The records, loaded ones first.</returns>
    public static IReadOnlyList<MergedAdapterRecord> Of(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var records = Loaded(model).SelectMany(o => o.Records).ToList();
        records.AddRange(MergedNow(model).Select(m => m.Record));
        return records;
    }

    /// <summary>Records that <paramref name="model"/>'s base weights (and its submodules') now come from <paramref name="source"/>.</summary>
    internal static void Remember(nn.Module model, string source, IReadOnlyList<MergedAdapterRecord> records)
    {
        var origin = new Origin(source, records);
        foreach (var node in ModuleTree.Walk(model))
        {
            s_origins.AddOrUpdate(node.Module, origin);
        }
    }

    /// <summary>A copy of <paramref name="metadata"/> with <see cref="MetadataKey"/> set to <paramref name="records"/> (removed when there are none).</summary>
    /// <param name="metadata">A safetensors file's <c>__metadata__</c>.</param>
    /// <param name="records">The adapters merged into the weights, in merge order.</param>
    /// <returns>The new metadata.</returns>
    public static Dictionary<string, string> WithRecords(IReadOnlyDictionary<string, string> metadata, IReadOnlyList<MergedAdapterRecord> records)
    {
        var result = new Dictionary<string, string>(metadata, StringComparer.Ordinal);
        result.Remove(MetadataKey);
        if (records.Count > 0)
        {
            result[MetadataKey] = Format(records);
        }

        return result;
    }

    /// <summary>The records of several weight files of one checkpoint: the common list, or all distinct records when they differ.</summary>
    internal static IReadOnlyList<MergedAdapterRecord> Combine(IEnumerable<IReadOnlyList<MergedAdapterRecord>> perFile)
    {
        var lists = perFile.ToList();
        if (lists.Count == 0) return Array.Empty<MergedAdapterRecord>();
        return lists.All(l => l.SequenceEqual(lists[0])) ? lists[0] : lists.SelectMany(l => l).Distinct().ToList();
    }

    /// <summary>
    /// Refuses to load the adapter in <paramref name="adapterWeights"/> into <paramref name="model"/> when the model's base
    /// weights already contain it: loaded from a file that records it, or merged into the model now under another name.
    /// </summary>
    /// <exception cref="AdapterAlreadyMergedException">They do; the message names the adapter, the file and the opt-out.</exception>
    internal static void EnsureNotMerged(nn.Module model, SafetensorsReader adapterWeights, PeftMethod method, string directory, string adapterName)
    {
        var loaded = Loaded(model).Where(o => o.Records.Count > 0).ToList();
        var merged = MergedNow(model).Where(m => m.Record.Name != adapterName).ToList();   // the same name is refused by the load itself
        if (loaded.Count == 0 && merged.Count == 0) return;

        string fingerprint = Fingerprint(adapterWeights, method);
        foreach (var origin in loaded)
        {
            if (origin.Records.FirstOrDefault(r => r.Sha256 == fingerprint) is { } record)
            {
                throw new AdapterAlreadyMergedException(
                    $"The adapter in {directory} ({record.PeftType}, sha256 {fingerprint[..12]}…) is already merged into this model's base weights: " +
                    $"they were loaded from {origin.Source}, which records it as merged (as adapter '{record.Name}'; {MetadataKey} in its safetensors metadata). " +
                    $"Loading it as adapter '{adapterName}' would apply its update twice. Load the unmerged base weights instead, or pass allowAlreadyMerged: true " +
                    "to load it anyway. Nothing was loaded.",
                    directory, origin.Source, record);
            }
        }

        foreach (var (record, _) in merged)
        {
            if (record.Sha256 == fingerprint)
            {
                throw new AdapterAlreadyMergedException(
                    $"The adapter in {directory} ({record.PeftType}, sha256 {fingerprint[..12]}…) is already merged into this model's base weights as adapter " +
                    $"'{record.Name}'. Loading it as adapter '{adapterName}' would apply its update twice. Call model.Unmerge(\"{record.Name}\") first, or pass " +
                    "allowAlreadyMerged: true to load it anyway. Nothing was loaded.",
                    directory, null, record);
            }
        }
    }

    /// <summary>Parses the records of a metadata map.</summary>
    private static IReadOnlyList<MergedAdapterRecord> Parse(IReadOnlyDictionary<string, string> metadata, string path)
    {
        if (!metadata.TryGetValue(MetadataKey, out var text)) return Array.Empty<MergedAdapterRecord>();
        string field = "__metadata__." + MetadataKey;
        var root = JsonFile.ParseObject(text, path, JsonFileKind.SafetensorsMetadata);
        SafetensorsFormatException Bad(string problem) => new(path, field, $"{field} {problem}");
        if (!root.TryGetPropertyValue("adapters", out var node) || node is not JsonArray adapters)
        {
            throw Bad("must be a JSON object with an \"adapters\" array");
        }

        var records = new List<MergedAdapterRecord>(adapters.Count);
        for (int i = 0; i < adapters.Count; i++)
        {
            if (adapters[i] is not JsonObject entry)
            {
                throw Bad($"entry {i} must be an object with \"name\", \"peft_type\" and \"sha256\"");
            }

            string name = Text(entry, "name", i);
            string peftType = Text(entry, "peft_type", i);
            string sha = Text(entry, "sha256", i);
            if (sha.Length != 64 || !sha.All(char.IsAsciiHexDigitLower))
            {
                throw Bad($"entry {i}: \"sha256\" must be 64 lower-case hex digits, not \"{sha}\"");
            }

            records.Add(new MergedAdapterRecord(name, peftType, sha));
        }

        return records;

        string Text(JsonObject entry, string key, int index)
            => entry[key] is JsonValue value && value.GetValueKind() == JsonValueKind.String && value.GetValue<string>() is { Length: > 0 } s
                ? s
                : throw Bad($"entry {index}: \"{key}\" must be a non-empty string");
    }

    private static IEnumerable<Origin> Loaded(nn.Module model)
    {
        var seen = new HashSet<Origin>(ReferenceEqualityComparer.Instance);
        foreach (var node in ModuleTree.Walk(model))
        {
            if (s_origins.TryGetValue(node.Module, out var origin) && seen.Add(origin))
            {
                yield return origin;
            }
        }
    }

    /// <summary>The adapters merged into <paramref name="model"/> now, with their records (fingerprints of the current values).</summary>
    private static IEnumerable<(MergedAdapterRecord Record, string Name)> MergedNow(nn.Module model)
    {
        var names = model.AdaptedLayers().SelectMany(l => l.Layer.MergedAdapters).Distinct(StringComparer.Ordinal).ToList();
        foreach (var name in names)
        {
            AdapterLayout layout;
            try
            {
                layout = AdapterLayout.Collect(model, name);
            }
            catch (PeftConfigurationException)
            {
                continue;   // an adapter that mixes methods has no PEFT file that could be loaded again
            }

            string sha = Hash(layout.FileTensors());
            yield return (new MergedAdapterRecord(name, layout.Method.PeftType, sha), name);
        }
    }

    private static bool IsAdapterTensor(string key, PeftMethod method)
        => method.IsPromptLearning
            ? method.TensorNames.Contains(key, StringComparer.Ordinal)
            : (key.StartsWith(AdapterFiles.KeyPrefix, StringComparison.Ordinal) && method.TensorNames.Any(n => key.EndsWith("." + n, StringComparison.Ordinal)))
                || method.SharedTensorNames.Any(n => key == SharedAdapterTensors.KeyPrefix + n);

    /// <summary>SHA-256 of the tensors in ordinal key order (see the class remarks for the bytes).</summary>
    private static string Hash(IEnumerable<(string Key, Func<Tensor> Read)> tensors)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (key, read) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            var tensor = read();
            var values = tensor.dtype == ScalarType.Float32 ? tensor : tensor.to(ScalarType.Float32);
            hash.AppendData(Encoding.UTF8.GetBytes(key));
            hash.AppendData([0]);
            hash.AppendData(Encoding.ASCII.GetBytes(string.Join(",", values.shape.Select(d => d.ToString(CultureInfo.InvariantCulture)))));
            hash.AppendData([0]);
            TensorChunks.ForEachReadOnly(values, TensorChunks.DefaultChunkBytes, (chunk, _) => hash.AppendData(chunk));
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Where a model's base weights came from, and what the files recorded as merged into them.</summary>
    private sealed record Origin(string Source, IReadOnlyList<MergedAdapterRecord> Records);
}
