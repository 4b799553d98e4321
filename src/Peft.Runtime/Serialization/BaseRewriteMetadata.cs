using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// Which base an adapter file that rewrote its base (PiSSA, OLoRA, SVFit, LoLDU: <see cref="IBaseRewritingAdapter"/>) belongs to. PEFT stores
/// <c>init_lora_weights="pissa"</c> and re-runs the initialisation on whatever base it is given at load, so such a file is only
/// right on the <em>original</em> base: on the residual base it would take the principal part out a second time. Saves record,
/// in the safetensors metadata under <see cref="MetadataKey"/> (PEFT ignores it), the fingerprints (<see cref="BaseFingerprint"/>)
/// of each module's original and residual weight; loads and <c>peft merge</c> compare the base they are given and refuse a
/// residual or foreign one, naming the module and the fix. Files without the record (PEFT's own) are trusted, as PEFT trusts them.
/// </summary>
public static class BaseRewriteMetadata
{
    /// <summary>The safetensors metadata key.</summary>
    public const string MetadataKey = "peft_base_rewrite";

    /// <summary>The record for adapter <paramref name="adapterName"/> of <paramref name="model"/>: module path → fingerprints, or
    /// null when none of its layers holds a residual.</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The metadata value, or null.</returns>
    public static string? Describe(nn.Module model, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        var root = new JsonObject();
        foreach (var (path, layer) in model.AdaptedLayers())
        {
            if (!layer.HasAdapter(adapterName) || layer.GetAdapter(adapterName) is not IBaseRewritingAdapter { RewritesBase: true }) continue;
            if (layer.ResidualFingerprints is not { } prints) continue;
            root[path] = new JsonObject { ["original"] = Array(prints.Original), ["residual"] = Array(prints.Residual) };
        }

        return root.Count == 0 ? null : root.ToJsonString();
    }

    /// <summary>Reads the record of a weights file: module path → (original, residual); empty when the file has none.</summary>
    /// <param name="metadata">The safetensors metadata.</param>
    /// <param name="path">The weights file, for messages.</param>
    /// <returns>The fingerprints by module path.</returns>
    /// <exception cref="AdapterFormatException">The record is malformed.</exception>
    public static IReadOnlyDictionary<string, (BaseFingerprint Original, BaseFingerprint Residual)> Read(IReadOnlyDictionary<string, string> metadata, string path)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        var result = new Dictionary<string, (BaseFingerprint, BaseFingerprint)>(StringComparer.Ordinal);
        if (!metadata.TryGetValue(MetadataKey, out var text)) return result;
        var root = JsonFile.ParseObject(text, path, JsonFileKind.SafetensorsMetadata);
        foreach (var (module, node) in root)
        {
            if (node is not JsonObject entry || Parse(entry["original"]) is not { } original || Parse(entry["residual"]) is not { } residual)
                throw new AdapterFormatException($"{path}: __metadata__.{MetadataKey} entry '{module}' must be {{\"original\": [sum, sum of squares, count], \"residual\": [...]}}.");
            result[module] = (original, residual);
        }

        return result;
    }

    /// <summary>
    /// Checks that <paramref name="weight"/> is the original base the file's adapter was initialised from (what a load that
    /// re-runs the initialisation, or <c>peft merge</c>, needs); refuses the residual base and a foreign one.
    /// </summary>
    /// <param name="record">The file's record (<see cref="Read"/>).</param>
    /// <param name="modulePath">The module.</param>
    /// <param name="weight">The base weight it will be initialised from.</param>
    /// <param name="source">The adapter file, for messages.</param>
    /// <exception cref="AdapterFormatException">The weight is the residual, or neither.</exception>
    public static void EnsureOriginal(IReadOnlyDictionary<string, (BaseFingerprint Original, BaseFingerprint Residual)> record, string modulePath,
        Tensor weight, string source)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (!record.TryGetValue(modulePath, out var prints)) return;
        var current = BaseFingerprint.Of(weight);
        if (prints.Original.Matches(current)) return;
        if (prints.Residual.Matches(current))
            throw new AdapterFormatException(
                $"{source}: the base weight of '{modulePath}' is the residual model this adapter was trained on, but loading the file re-derives the residual " +
                "from the original base (PiSSA/OLoRA's init_lora_weights, as PEFT does on load; SVFit and LoLDU likewise), which would take the adapter's part out a second time; " +
                "nothing was changed. Use the original base weights; a PiSSA/OLoRA adapter can instead be converted to a plain LoRA (LoRAConversion, peft convert) or saved " +
                "with init_lora_weights true for the residual base.");
        throw new AdapterFormatException(
            $"{source}: the base weight of '{modulePath}' is not the one this adapter was initialised from (neither the original nor the residual weight recorded in " +
            $"__metadata__.{MetadataKey}); its residual would differ. Use the base model the adapter was trained from; nothing was changed.");
    }

    /// <summary>
    /// Checks that <paramref name="weight"/> is the residual the file's adapter was trained with, for an adapter whose residual
    /// came from calibration data (CorDA): <c>peft merge</c> cannot repeat that calibration, so it adds the update to the
    /// residual base; the original base is refused with the fix. Files without a record (from PEFT) are trusted.
    /// </summary>
    /// <param name="record">The file's record.</param>
    /// <param name="modulePath">The module.</param>
    /// <param name="weight">The base weight the update will be added to.</param>
    /// <param name="source">The adapter file, for messages.</param>
    /// <exception cref="AdapterFormatException">The weight is the original, or neither.</exception>
    public static void EnsureResidual(IReadOnlyDictionary<string, (BaseFingerprint Original, BaseFingerprint Residual)> record, string modulePath,
        Tensor weight, string source)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (!record.TryGetValue(modulePath, out var prints)) return;
        var current = BaseFingerprint.Of(weight);
        if (prints.Residual.Matches(current)) return;
        if (prints.Original.Matches(current))
            throw new AdapterFormatException(
                $"{source}: the base weight of '{modulePath}' is the original weight, but this adapter's residual W − s·B₀A₀ came from calibration data (CorDA, " +
                "init_lora_weights \"corda\"), which a merge cannot repeat. Merge onto the residual base (the model's base weights after PreprocessCorDA, saved with " +
                "ModelWeights.Save), or convert the adapter to a plain LoRA for the original base (peft convert) and merge that; nothing was written.");
        throw new AdapterFormatException(
            $"{source}: the base weight of '{modulePath}' is neither the residual this adapter was trained with nor its original weight (recorded in " +
            $"__metadata__.{MetadataKey}); use the residual base the adapter was trained on; nothing was written.");
    }

    /// <summary>Checks that the model's base already holds the residual the file's adapter was trained with (a load into an
    /// existing base-rewriting adapter copies the adapter's tensors only).</summary>
    /// <param name="record">The file's record.</param>
    /// <param name="modulePath">The module.</param>
    /// <param name="layer">The model's layer.</param>
    /// <param name="source">The adapter file, for messages.</param>
    /// <exception cref="AdapterFormatException">The residual differs.</exception>
    public static void EnsureSameResidual(IReadOnlyDictionary<string, (BaseFingerprint Original, BaseFingerprint Residual)> record, string modulePath,
        AdaptedLayer layer, string source)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentNullException.ThrowIfNull(layer);
        if (!record.TryGetValue(modulePath, out var prints)) return;
        if (prints.Residual.Matches(layer.Weight)) return;
        throw new AdapterFormatException(
            $"{source}: the model's base weight of '{modulePath}' is not the residual this adapter was trained with (the model's adapter was initialised from another " +
            "base weight); the file's tensors would pair with the wrong residual. Load the original base weights and call model.ReinitializeFromBase(), or load the file into a " +
            "model without this adapter (the load then derives the residual itself); nothing was loaded.");
    }

    private static JsonArray Array(BaseFingerprint f) => new(f.Sum, f.SumOfSquares, f.Count);

    private static BaseFingerprint? Parse(JsonNode? node)
    {
        if (node is not JsonArray { Count: 3 } a) return null;
        try
        {
            return new BaseFingerprint(a[0]!.GetValue<double>(), a[1]!.GetValue<double>(), a[2]!.GetValue<long>());
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or NullReferenceException)
        {
            return null;
        }
    }
}
