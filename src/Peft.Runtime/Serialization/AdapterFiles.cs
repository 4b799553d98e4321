using System.Globalization;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>Options for <see cref="AdapterFiles.Save"/>.</summary>
public sealed record AdapterSaveOptions
{
    /// <summary>Written as <c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>Written as <c>task_type</c> (e.g. "CAUSAL_LM", "SEQ_CLS"), or null.</summary>
    public string? TaskType { get; init; }

    /// <summary>Written as <c>revision</c>.</summary>
    public string? Revision { get; init; }

    /// <summary>
    /// Prompt tuning: written as <c>tokenizer_name_or_path</c> (default: <see cref="BaseModelNameOrPath"/>). PEFT refuses a
    /// TEXT-initialised prompt config without a tokenizer, so a prompt with an init text is recorded as TEXT only when
    /// one of the two is set, and as RANDOM otherwise.
    /// </summary>
    public string? TokenizerNameOrPath { get; init; }

    /// <summary>
    /// Whether the model's <c>[Trainable]</c> modules (a classification head) are written into the adapter file as PEFT's
    /// <c>modules_to_save</c> (default true), so the one directory holds the whole adaptation. False writes the adapter
    /// alone (<c>"modules_to_save": null</c>); save the members with <see cref="ModelWeights"/> then.
    /// </summary>
    public bool SaveTrainableMembers { get; init; } = true;
}

/// <summary>What <see cref="AdapterFiles.Load"/> did.</summary>
/// <param name="Config">The config that was read.</param>
/// <param name="LoadedTensors">How many tensors were copied into the model.</param>
/// <param name="MissingKeys">Keys the model expects that the file lacks (empty unless strict is false).</param>
/// <param name="UnexpectedKeys">Keys in the file the model has no place for (empty unless strict is false).</param>
/// <param name="ShapeMismatches">Keys whose shapes differ, with both shapes (empty unless strict is false).</param>
public sealed record AdapterLoadResult(
    AdapterConfig Config,
    int LoadedTensors,
    IReadOnlyList<string> MissingKeys,
    IReadOnlyList<string> UnexpectedKeys,
    IReadOnlyList<string> ShapeMismatches)
{
    /// <summary>
    /// Paths of the modules whose weights were replaced from the file's <c>modules_to_save</c> tensors (counted in
    /// <see cref="LoadedTensors"/>); empty when the config names none.
    /// </summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = Array.Empty<string>();
}

/// <summary>
/// Saves and loads adapters in Hugging Face PEFT's format: a directory with <c>adapter_config.json</c> and
/// <c>adapter_model.safetensors</c> (metadata <c>{"format": "pt"}</c>), tensor keys
/// <c>base_model.model.{module path}.{lora_A.weight|lora_B.weight|lokr_w1|...}</c> or <c>prompt_embeddings</c>. Each method's
/// <see cref="PeftMethod"/> writes and reads its config fields and names its tensors; this class is the same for all.
/// <c>[Trainable]</c> modules travel as PEFT's <c>modules_to_save</c>: listed by name in the config, their state-dict
/// tensors keyed <c>base_model.model.{module path}.{weight|bias|...}</c> (<c>base_model.{module path}...</c> for prompt
/// tuning). A model holds one copy of each such module, shared by all its adapters (PEFT keeps one per adapter).
/// </summary>
public static class AdapterFiles
{
    /// <summary>PEFT's config file name.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>PEFT's weights file name.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>The prefix PEFT's PeftModel adds to every module path.</summary>
    public const string KeyPrefix = "base_model.model.";

    /// <summary>The <c>peft_version</c> this library writes (the PEFT release whose format it follows).</summary>
    public const string PeftVersion = "0.20.0";

    /// <summary>
    /// Writes adapter <paramref name="adapterName"/> of <paramref name="model"/> into <paramref name="directory"/>
    /// (created if needed). Both files are written atomically (temporary file, then rename), the weights first, so
    /// a crash never leaves a config that points at missing weights. To mirror PEFT's multi-adapter layout, save
    /// named adapters into subdirectories named after them. Unless <see cref="AdapterSaveOptions.SaveTrainableMembers"/>
    /// is false, the <c>[Trainable]</c> modules are written too (PEFT's <c>modules_to_save</c>, current values: every
    /// adapter's file gets the same, shared module).
    /// </summary>
    /// <exception cref="PeftConfigurationException">No layer has the adapter, it mixes methods (a PEFT adapter has one
    /// peft_type), a <c>[Trainable]</c> member is a bare parameter (PEFT's modules_to_save holds modules), or a
    /// <c>[Trainable]</c> module cannot be named without selecting another module; or a class declares adapters its
    /// constructor never created (it did not call the generated <c>InitializePeft()</c>; PEFT0013).</exception>
    public static void Save(nn.Module model, string directory, string adapterName = AdapterNames.Default, AdapterSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        PeftModel.EnsureInitialized(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        options ??= new AdapterSaveOptions();
        var layout = AdapterLayout.Collect(model, adapterName);

        // Everything that can be rejected (mixed per-layer settings) is rejected before any file is touched.
        var fields = layout.ConfigFields(model, options.TokenizerNameOrPath ?? options.BaseModelNameOrPath);
        fields["base_model_name_or_path"] = options.BaseModelNameOrPath;
        fields["task_type"] = options.TaskType;
        fields["revision"] = options.Revision;
        fields["inference_mode"] = true;
        fields["peft_version"] = PeftVersion;
        fields["auto_mapping"] = null;
        var modules = options.SaveTrainableMembers ? ModulesToSave.Trainable(model, layout.Method, adapterName) : new List<ModulesToSave.Entry>();
        if (modules.Count > 0)
            fields["modules_to_save"] = new JsonArray(ModulesToSave.Names(model, modules, layout.Method, adapterName).Select(n => (JsonNode?)n).ToArray());
        string json = AdapterConfig.ToJson(fields);

        Directory.CreateDirectory(directory);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var (key, parameter) in layout.Tensors) tensors.Add(new(key, parameter.detach()));
            foreach (var (key, compute, _, _) in layout.Computed) tensors.Add(new(key, compute()));
            foreach (var (key, shared) in layout.Shared) tensors.Add(new(key, shared.detach()));
            foreach (var (key, target) in modules.SelectMany(m => m.Tensors)) tensors.Add(new(key, target.detach()));
            var metadata = new Dictionary<string, string> { ["format"] = "pt" };
            if (BaseRewriteMetadata.Describe(model, adapterName) is { } rewrite) metadata[BaseRewriteMetadata.MetadataKey] = rewrite;
            SafetensorsFile.Write(Path.Combine(directory, WeightsFileName), tensors, metadata);
        }
        finally
        {
            foreach (var pair in tensors) pair.Value.Dispose();
        }

        WriteAtomically(Path.Combine(directory, ConfigFileName), json);
    }

    /// <summary>
    /// Loads <c>adapter_config.json</c> + <c>adapter_model.safetensors</c> from <paramref name="directory"/> into the
    /// model's adapter <paramref name="adapterName"/>. When no layer has that adapter yet, it is created on the
    /// wrapped layers the config targets (so a second named adapter can be loaded beside the declared one).
    /// Everything is checked before anything is copied: with <paramref name="strict"/> (the default) any missing,
    /// unexpected or mis-shaped tensor fails the load with all of them listed by name and the model unchanged.
    /// The config's <c>modules_to_save</c> (PEFT's trained copies of whole modules, e.g. a classification head) are
    /// checked the same way and then copied into the model's modules, <c>[Trainable]</c> or not (a module that is not
    /// <c>[Trainable]</c> gets the values and stays frozen). The model holds one copy of each such module for all its
    /// adapters, so the last adapter loaded sets it.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    /// <exception cref="FileNotFoundException">The config or the weights file is missing.</exception>
    /// <exception cref="AdapterFormatException">The config is malformed or unsupported, names another method than the
    /// model's adapter, disagrees with the model's adapter on a setting that changes its output (r, alpha, use_rslora),
    /// names a <c>modules_to_save</c> entry that matches no module of the model, or a tensor holds NaN or infinity.</exception>
    /// <exception cref="SafetensorsFormatException">The weights file is malformed.</exception>
    /// <exception cref="TensorMismatchException">With <paramref name="strict"/>: missing, unexpected or mis-shaped tensors.</exception>
    /// <exception cref="InvalidOperationException">The adapter is merged into the base weights (unmerge it first).</exception>
    /// <exception cref="PeftConfigurationException">A class declares adapters its constructor never created (it did not call
    /// the generated <c>InitializePeft()</c>; PEFT0013).</exception>
    /// <exception cref="AdapterAlreadyMergedException">The model's base weights already contain this adapter, merged (loaded from
    /// a merged export that records it, see <see cref="MergedAdapterMetadata"/>, or merged in the model under another name):
    /// loading it would apply its update twice. Pass <paramref name="allowAlreadyMerged"/> to load it anyway.</exception>
    /// <param name="model">The model.</param>
    /// <param name="directory">The adapter directory.</param>
    /// <param name="adapterName">The adapter to load into (created when missing).</param>
    /// <param name="strict">Whether any missing, unexpected or mis-shaped tensor fails the load.</param>
    /// <param name="allowAlreadyMerged">Load the adapter even when the base weights already contain it.</param>
    /// <returns>What was loaded.</returns>
    public static AdapterLoadResult Load(nn.Module model, string directory, string adapterName = AdapterNames.Default, bool strict = true,
        bool allowAlreadyMerged = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        PeftModel.EnsureInitialized(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentException.ThrowIfNullOrEmpty(adapterName);
        string configPath = Path.Combine(directory, ConfigFileName);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Adapter directory not found: {directory}");
        var config = AdapterConfig.Read(configPath);
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException($"{directory} has {ConfigFileName} but no {WeightsFileName}; PEFT's pickle format (adapter_model.bin) is not supported.", weightsPath);
        var method = PeftMethods.ForConfig(config);

        // Open (and so validate) the weights before the model is touched.
        using var reader = SafetensorsFile.Open(weightsPath);
        if (!allowAlreadyMerged) MergedAdapterMetadata.EnsureNotMerged(model, reader, method, directory, adapterName);

        // Loading under a new name creates the adapter; any failure below removes it again and restores trainability,
        // so a failed load leaves the model as it was.
        bool creates = !model.AdapterNames().Contains(adapterName, StringComparer.Ordinal);
        if (creates) AdapterCreationCheck.EnsureFits(reader, config, configPath);
        if (method.ReadOptions(config, null).NeedsCalibration) EnsureCalibrated(model, adapterName, creates, configPath);
        var rewrite = BaseRewriteMetadata.Read(reader.Metadata, weightsPath);
        if (rewrite.Count > 0)
        {
            // Layers a creating load adapts may not be wrapped yet: find the base weights by name.
            var weights = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
            var layers = model.AdaptedLayers().ToDictionary(l => l.Path, l => l.Layer, StringComparer.Ordinal);
            foreach (var module in rewrite.Keys)
            {
                // (A merged layer is refused below with its own message.)
                if (!creates && layers.TryGetValue(module, out var layer) && layer.HasAdapter(adapterName) && !layer.IsMerged)
                    BaseRewriteMetadata.EnsureSameResidual(rewrite, module, layer, weightsPath);
                else if (creates && weights.TryGetValue(module + "." + AdaptedLayer.WeightName, out var weight))
                    BaseRewriteMetadata.EnsureOriginal(rewrite, module, weight, weightsPath);
            }
        }

        var requiresGrad = creates ? model.parameters().Select(p => (p, p.requires_grad)).ToList() : null;

        // An initialisation that rewrites the base (PiSSA, OLoRA) runs when the load creates the adapter, as PEFT's does: keep
        // the (matrix) weights so that a failed load can put them back.
        var bases = creates && method.ReadOptions(config, null).RewritesBase
            ? model.named_parameters().Where(p => p.name.EndsWith(AdaptedLayer.WeightName, StringComparison.Ordinal) && p.parameter.Dimensions == 2)
                .Select(p => (Weight: p.parameter, Copy: p.parameter.detach().clone())).ToList()
            : null;
        try
        {
            return LoadInto(model, reader, config, method, configPath, weightsPath, adapterName, strict, creates);
        }
        catch when (creates)
        {
            if (model.AdapterNames().Contains(adapterName, StringComparer.Ordinal)) model.DeleteAdapter(adapterName);
            foreach (var (parameter, was) in requiresGrad!)
            {
                if (parameter.requires_grad != was) parameter.requires_grad = was;
            }

            using (no_grad())
            {
                foreach (var (weight, copy) in bases ?? new()) weight.copy_(copy);
            }
            throw;
        }
        finally
        {
            foreach (var (_, copy) in bases ?? new()) copy.Dispose();
        }
    }

    /// <summary>An adapter whose initialisation rewrote its base from calibration data (CorDA) loads only into a calibrated
    /// adapter of the model: a load cannot derive that residual from the weights, as PEFT's cannot without preprocess_corda.</summary>
    private static void EnsureCalibrated(nn.Module model, string adapterName, bool creates, string configPath)
    {
        const string Fix = "Create the adapter in the model (its attribute, or ApplyTargets with the same options), calibrate it with model.PreprocessCorDA(...) on " +
            "the original base weights (the same calibration data, or the cache file it wrote), then load the file into it; or convert the file to a plain LoRA for the " +
            "original base (peft convert). Nothing was loaded.";
        if (creates)
        {
            throw new AdapterFormatException(
                $"{configPath}: the adapter was initialised from calibration data (CorDA, init_lora_weights \"corda\"), and its base is the residual W − s·B₀A₀ of that " +
                $"calibration, which a load cannot derive from the weights alone. {Fix}");
        }

        var waiting = model.AdaptedLayers()
            .Where(l => l.Layer.HasAdapter(adapterName) && l.Layer.GetAdapter(adapterName) is { Config.NeedsCalibration: true } a && a is IBaseRewritingAdapter { RewritesBase: false })
            .Select(l => l.Path)
            .ToList();
        if (waiting.Count > 0)
        {
            throw new AdapterFormatException(
                $"{configPath}: the model's adapter '{adapterName}' on {string.Join(", ", waiting)} has not been calibrated yet (CorDA), so the base does not hold the residual the " +
                $"file's tensors were trained with. {Fix}");
        }
    }

    private static AdapterLoadResult LoadInto(nn.Module model, SafetensorsReader reader, AdapterConfig config, PeftMethod method,
        string configPath, string weightsPath, string adapterName, bool strict, bool creates)
    {
        if (creates)
        {
            method.CreateFromConfig(model, adapterName, config, reader.Tensors.ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal));
            model.ApplyTrainability();
        }
        var layout = AdapterLayout.Collect(model, adapterName);
        if (layout.Method != method)
            throw new AdapterFormatException($"{configPath} holds a {method.Name} adapter ({config.PeftType}) but the model's adapter '{adapterName}' is {layout.Method.Name} ({layout.Method.PeftType}).");
        layout.CheckFanInFanOut(model, config, configPath);
        if (layout.Computed.Count > 0)
        {
            var (key, _, path, adapter) = layout.Computed[0];
            throw new AdapterFormatException(
                $"{configPath}: the model's adapter '{adapterName}' on '{path}' ({adapter.Method.Name}) saves {key} computed from its parameters, not the parameters, " +
                "so a file cannot be loaded back into it; nothing was loaded. Load the file under a new adapter name (it is created as the file's config describes), " +
                "or resume training from a trainer checkpoint (CheckpointStore keeps every parameter).");
        }

        var merged = model.AdaptedLayers()
            .Where(l => l.Layer.HasAdapter(adapterName) && l.Layer.GetAdapter(adapterName).Merged)
            .Select(l => l.Path)
            .ToList();
        if (merged.Count > 0)
            throw new InvalidOperationException(
                $"Adapter '{adapterName}' is merged into the base weights of {string.Join(", ", merged)}; loading new values into it would corrupt them on Unmerge(). Call model.Unmerge(\"{adapterName}\") first; nothing was loaded.");

        var modules = ModulesToSave.FromConfig(model, config, method, configPath);
        var targets = layout.Tensors.Select(t => (t.Key, Target: (Tensor)t.Value)).Concat(layout.Shared).Concat(modules.SelectMany(m => m.Tensors)).ToList();
        var expected = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, target) in targets)
        {
            if (!expected.TryAdd(key, target))
                throw new AdapterFormatException($"{configPath}: the tensor key {key} belongs both to the adapter and to a modules_to_save module; nothing was loaded.");
        }

        var missing = expected.Keys.Where(k => !reader.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var unexpected = reader.Tensors.Select(t => t.Name).Where(n => !expected.ContainsKey(n)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var mismatched = new List<string>();
        var loadable = new List<(string Key, Tensor Parameter)>();
        foreach (var (key, parameter) in targets)
        {
            if (!reader.Contains(key)) continue;
            var info = reader.GetInfo(key);
            if (!info.Shape.SequenceEqual(parameter.shape))
                mismatched.Add($"{key}: file [{string.Join(", ", info.Shape)}], model [{string.Join(", ", parameter.shape)}]");
            else
                loadable.Add((key, parameter));
        }

        if (strict && (missing.Count > 0 || unexpected.Count > 0 || mismatched.Count > 0))
        {
            var message = new System.Text.StringBuilder();
            message.Append(CultureInfo.InvariantCulture, $"Adapter {weightsPath} does not fit the model's adapter '{adapterName}'; nothing was loaded.");
            if (missing.Count > 0) message.Append("\n  missing keys: ").AppendJoin(", ", missing);
            if (unexpected.Count > 0) message.Append("\n  unexpected keys: ").AppendJoin(", ", unexpected);
            if (mismatched.Count > 0) message.Append("\n  shape mismatches: ").AppendJoin("; ", mismatched);
            message.Append("\n  Check that the adapter was trained for this model (same target modules, modules_to_save, ranks and sizes).");
            if (unexpected.Count > 0 && !creates)
                message.Append(CultureInfo.InvariantCulture, $"\n  If the file adapts more layers than the model's adapter '{adapterName}' has, model.LoadAdapterWithTargets(directory) adds them from the config's target_modules first.");
            throw new TensorMismatchException(message.ToString(), missing, unexpected, mismatched);
        }

        var settings = layout.SettingMismatches(config);
        if (settings.Count > 0)
            throw new AdapterFormatException(
                $"{configPath} does not describe the model's adapter '{adapterName}' (the same tensors would compute a different update); nothing was loaded.\n  " +
                string.Join("\n  ", settings));

        // Read and check every value before the first copy, so a bad tensor leaves the model unchanged.
        var values = new List<(Tensor Parameter, Tensor Value)>();
        try
        {
            foreach (var (key, parameter) in loadable)
            {
                using var raw = reader.ReadTensor(key);
                var converted = raw.to(parameter.dtype, parameter.device);
                values.Add((parameter, converted));
                using var finite = isfinite(converted);
                using var all = finite.all();
                if (!all.item<bool>())
                    throw new AdapterFormatException($"Adapter tensor {key} in {weightsPath} holds NaN or infinite values; nothing was loaded.");
            }

            using (no_grad())
            {
                foreach (var (parameter, value) in values) parameter.copy_(value);
            }
        }
        finally
        {
            foreach (var (_, value) in values) value.Dispose();
        }
        return new AdapterLoadResult(config, values.Count, missing, unexpected, mismatched)
        {
            ModulesToSave = modules.Select(m => m.Path).ToList(),
        };
    }

    /// <summary>Writes a small text file through the library's one atomic writer (<see cref="Checkpoints.AtomicFile"/>).</summary>
    internal static void WriteAtomically(string path, string text) => Checkpoints.AtomicFile.WriteAllText(path, text);
}
