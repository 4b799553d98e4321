using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Peft.Serialization;

/// <summary>
/// PEFT's conversion of an adapter that rewrote its base (PiSSA, OLoRA, CorDA) into a plain LoRA for the <em>original</em> base
/// (<c>save_pretrained(path_initial_model_for_weight_conversion=...)</c>): with the trained factors <c>A, B</c> and the initial
/// ones <c>A₀, B₀</c> (the adapter saved right after initialisation), <c>A' = [A; A₀]</c> and <c>B' = [B, −B₀]</c>, so that
/// <c>W + s·B'A' = (W − s·B₀A₀) + s·B A</c>: the original base plus the converted adapter computes what the residual base plus the
/// trained adapter computes. The rank doubles; PEFT doubles <c>r</c>, <c>lora_alpha</c> (times √2 with rsLoRA, keeping
/// <c>alpha/√r</c>) and every <c>rank_pattern</c>/<c>alpha_pattern</c> value, refuses patterns together with rsLoRA, and writes
/// <c>init_lora_weights</c> true. <c>modules_to_save</c> tensors are kept as they are (they do not depend on the residual; PEFT's
/// conversion drops them).
/// </summary>
public static class LoRAConversion
{
    /// <summary>Converts <paramref name="trainedDirectory"/> with the initial adapter <paramref name="initialDirectory"/> into a
    /// plain LoRA adapter directory <paramref name="outputDirectory"/>.</summary>
    /// <param name="trainedDirectory">The trained adapter (init_lora_weights "pissa", "pissa_niter_K", "olora", "corda", or true).</param>
    /// <param name="initialDirectory">The same adapter saved right after initialisation, before training.</param>
    /// <param name="outputDirectory">The converted adapter's directory (created if needed).</param>
    /// <returns>The number of converted modules.</returns>
    /// <exception cref="AdapterFormatException">A file is not a plain LoRA adapter, the two adapters do not have the same modules,
    /// ranks, alphas and shapes, their recorded residuals differ, or rsLoRA is combined with rank or alpha patterns.</exception>
    public static int ToOriginalBase(string trainedDirectory, string initialDirectory, string outputDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(outputDirectory);
        var trained = ReadLoRA(trainedDirectory, "trained");
        var initial = ReadLoRA(initialDirectory, "initial");
        using var trainedWeights = SafetensorsFile.Open(Path.Combine(trainedDirectory, AdapterFiles.WeightsFileName));
        using var initialWeights = SafetensorsFile.Open(Path.Combine(initialDirectory, AdapterFiles.WeightsFileName));
        bool rs = trained.GetBool("use_rslora", false);
        if (rs && (trained.RankPattern.Count > 0 || trained.AlphaPattern.Count > 0))
            throw new AdapterFormatException($"{trained.Source}: use_rslora together with rank_pattern or alpha_pattern cannot be converted (PEFT refuses it too: doubling a pattern's alpha does not keep alpha/√r).");
        var trainedPrints = BaseRewriteMetadata.Read(trainedWeights.Metadata, trainedWeights.Path);
        var initialPrints = BaseRewriteMetadata.Read(initialWeights.Metadata, initialWeights.Path);
        foreach (var (module, prints) in trainedPrints)
        {
            if (initialPrints.TryGetValue(module, out var other) && !other.Residual.Matches(prints.Residual))
                throw new AdapterFormatException($"{initialWeights.Path}: module '{module}' was initialised from another base weight than {trainedWeights.Path} (their recorded residuals differ); give the adapter saved right after this one's initialisation.");
        }

        var trainedKeys = trainedWeights.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var initialLoRA = initialWeights.Tensors.Select(t => t.Name).Where(IsLoRA).ToHashSet(StringComparer.Ordinal);
        var trainedLoRA = trainedKeys.Where(IsLoRA).ToHashSet(StringComparer.Ordinal);
        if (!trainedLoRA.SetEquals(initialLoRA))
        {
            var missing = trainedLoRA.Except(initialLoRA).Concat(initialLoRA.Except(trainedLoRA)).OrderBy(k => k, StringComparer.Ordinal).Take(5);
            throw new AdapterFormatException($"{initialWeights.Path} and {trainedWeights.Path} do not adapt the same modules (e.g. {string.Join(", ", missing)} is in only one); give the initial adapter of this training run.");
        }

        var output = new List<KeyValuePair<string, Tensor>>();
        int modules = 0;
        try
        {
            foreach (var key in trainedWeights.Tensors.Select(t => t.Name))
            {
                var value = trainedWeights.ReadTensor(key);
                if (!IsLoRA(key))
                {
                    output.Add(new(key, value));
                    continue;
                }

                using (value)
                {
                    string module = ModulePath(key);
                    if (trained.Rank(module, 8) != initial.Rank(module, 8) || trained.Alpha(module, "lora_alpha", 8) != initial.Alpha(module, "lora_alpha", 8))
                        throw new AdapterFormatException($"{initial.Source}: module '{module}' has r {initial.Rank(module, 8)} and lora_alpha {initial.Alpha(module, "lora_alpha", 8)}, {trained.Source} has r {trained.Rank(module, 8)} and lora_alpha {trained.Alpha(module, "lora_alpha", 8)}; they must be the same adapter.");
                    using var start = initialWeights.ReadTensor(key).to(value.dtype);
                    if (!start.shape.SequenceEqual(value.shape))
                        throw new AdapterFormatException($"{initialWeights.Path}: {key} is [{string.Join(", ", start.shape)}], {trainedWeights.Path} has [{string.Join(", ", value.shape)}].");
                    if (key.EndsWith(".lora_A.weight", StringComparison.Ordinal))
                    {
                        output.Add(new(key, cat(new[] { value, start }, 0)));             // A' = [A; A₀]
                        modules++;
                    }
                    else
                    {
                        using var negated = start.neg();
                        output.Add(new(key, cat(new[] { value, negated }, 1)));           // B' = [B, −B₀]
                    }
                }
            }

            Directory.CreateDirectory(outputDirectory);
            SafetensorsFile.Write(Path.Combine(outputDirectory, AdapterFiles.WeightsFileName), output, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var pair in output) pair.Value.Dispose();
        }

        var fields = trained.Raw.ToDictionary(p => p.Key, p => p.Value?.DeepClone(), StringComparer.Ordinal);
        fields["r"] = 2 * trained.GetInt("r", 8);
        double alpha = trained.Alpha(null, "lora_alpha", 8);
        fields["lora_alpha"] = rs ? alpha * Math.Sqrt(2) : 2 * alpha;
        fields["rank_pattern"] = Doubled(trained.RankPattern.ToDictionary(p => p.Key, p => (double)p.Value), integer: true);
        fields["alpha_pattern"] = Doubled(trained.AlphaPattern, integer: false);
        fields["init_lora_weights"] = true;
        AdapterFiles.WriteAtomically(Path.Combine(outputDirectory, AdapterFiles.ConfigFileName), AdapterConfig.ToJson(fields));
        return modules;
    }

    private static AdapterConfig ReadLoRA(string directory, string role)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"The {role} adapter directory was not found: {directory}");
        var config = AdapterConfig.Read(Path.Combine(directory, AdapterFiles.ConfigFileName));
        if (config.PeftType != "LORA" || config.GetBool("use_dora", false))
            throw new AdapterFormatException($"{config.Source}: the {role} adapter is {config.PeftType}{(config.GetBool("use_dora", false) ? " with use_dora" : string.Empty)}; only plain LoRA adapters initialised by PiSSA, OLoRA or CorDA convert.");
        var options = LoRAConfigFields.Read(config, null);
        if (options.Init == LoRAInit.LoftQ)
            throw new AdapterFormatException($"{config.Source}: the {role} adapter is LoftQ (init_lora_weights \"loftq\"), whose base is the quantized Q, not W − s·B₀A₀, so [A; A₀], [B, −B₀] would not give its model on the original base; PEFT converts PiSSA, OLoRA and CorDA only. Use it with the LoftQ base (the original base quantized by the adapter's load), or merge it with peft merge.");
        if (!options.RewritesBase && options.Init != LoRAInit.KaimingUniform)
            throw new AdapterFormatException($"{config.Source}: init_lora_weights of the {role} adapter is {options.Init}; the conversion is for adapters initialised by PiSSA, OLoRA or CorDA (\"pissa\", \"pissa_niter_K\", \"olora\", \"corda\", or true once marked for the residual base).");
        return config;
    }

    private static bool IsLoRA(string key) => key.EndsWith(".lora_A.weight", StringComparison.Ordinal) || key.EndsWith(".lora_B.weight", StringComparison.Ordinal);

    private static string ModulePath(string key)
    {
        string path = key.StartsWith(AdapterFiles.KeyPrefix, StringComparison.Ordinal) ? key[AdapterFiles.KeyPrefix.Length..] : key;
        return path[..path.LastIndexOf(".lora_", StringComparison.Ordinal)];
    }

    private static JsonObject Doubled(IReadOnlyDictionary<string, double> pattern, bool integer)
    {
        var result = new JsonObject();
        foreach (var (key, value) in pattern) result[key] = integer ? JsonValue.Create((int)(2 * value)) : JsonValue.Create(2 * value);
        return result;
    }
}
