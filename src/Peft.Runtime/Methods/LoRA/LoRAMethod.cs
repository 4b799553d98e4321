using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft;

/// <summary>
/// LoRA (<see cref="LoRAAttribute"/>) and rsLoRA in Hugging Face PEFT's format: <c>peft_type</c> "LORA", tensors
/// <c>lora_A.weight</c> <c>[r, in]</c> and <c>lora_B.weight</c> <c>[out, r]</c>, config fields <c>r</c>, <c>lora_alpha</c>,
/// <c>lora_dropout</c>, <c>use_rslora</c>, <c>init_lora_weights</c>, <c>rank_pattern</c>, <c>alpha_pattern</c>,
/// <c>fan_in_fan_out</c>.
/// </summary>
public sealed class LoRAMethod : PeftMethod
{
    /// <summary>The registered instance.</summary>
    public static LoRAMethod Instance { get; } = new();

    private static readonly string[] s_tensorNames = { "lora_A.weight", "lora_B.weight" };

    private LoRAMethod()
    {
    }

    /// <inheritdoc />
    public override string Name => "LoRA";

    /// <inheritdoc />
    public override string PeftType => "LORA";

    /// <inheritdoc />
    public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

    /// <inheritdoc />
    public override Type AttributeType => typeof(LoRAAttribute);

    /// <inheritdoc />
    public override Type OptionsType => typeof(LoRAOptions);

    /// <inheritdoc />
    public override IReadOnlyList<string> TensorNames => s_tensorNames;

    /// <inheritdoc />
    public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.GetBool("use_dora", false))
            throw config.Unsupported("use_dora", "DoRA adapters are read by the DoRA method; this one is LoRA only.");
        if (config.Raw[KaSAMethod.ConfigField] is not null)
            throw config.Unsupported(KaSAMethod.ConfigField, "KaSA adapters are read by the KaSA method; this one is LoRA only.");
        return LoRAConfigFields.Read(config, modulePath);
    }

    /// <inheritdoc />
    public override void WriteConfig(AdapterConfigWriter writer) => LoRAConfigFields.Write(writer, useDora: false);

    /// <inheritdoc />
    public override IEnumerable<string> SettingMismatches(string path, PeftAdapterOptions fromFile, PeftAdapterOptions inModel)
        => LoRAConfigFields.Mismatches(path, (LoRAOptions)fromFile, inModel is LoRAOptions l ? l : null);
}

/// <summary>The LoraConfig fields every LoRA-format method (LoRA, DoRA, ...) reads and writes: one copy.</summary>
public static class LoRAConfigFields
{
    /// <summary>Reads r, lora_alpha (with the module's rank_pattern/alpha_pattern), lora_dropout, use_rslora and
    /// init_lora_weights, refusing settings this library does not implement.</summary>
    /// <param name="config">The config.</param>
    /// <param name="modulePath">The module, or null for the adapter-wide values.</param>
    /// <returns>The options as LoRA options.</returns>
    /// <exception cref="AdapterFormatException">A field is malformed, out of range or unsupported.</exception>
    public static LoRAOptions Read(AdapterConfig config, string? modulePath)
    {
        ArgumentNullException.ThrowIfNull(config);
        string bias = config.GetString("bias") ?? "none";
        if (bias != "none") throw config.Unsupported("bias", "only \"none\" is (train the base biases with [Trainable] instead).");
        if (config.GetBool("lora_bias", false)) throw config.Unsupported("lora_bias", "a trainable bias on lora_B is not implemented.");
        int r = config.Rank(modulePath, 8);
        double alpha = config.Alpha(modulePath, "lora_alpha", 8);
        double dropout = config.Probability("lora_dropout");
        var (init, iterations) = ReadInit(config);
        var (bits, loftqIterations) = init == LoRAInit.LoftQ ? ReadLoftQ(config) : (4, 1);
        var corda = init == LoRAInit.CorDA ? ReadCorDA(config) : CorDAMethod.Ipm;
        return new LoRAOptions(r, alpha, dropout, config.GetBool("use_rslora", false), init, iterations, bits, loftqIterations, corda)
        {
            // PEFT keeps the declared r and lora_alpha and writes EVA's per-layer ranks and alphas as patterns.
            Eva = init == LoRAInit.EVA ? new EvaSettings(EvaConfig.Read(config), config.Rank(null, 8), config.Alpha(null, "lora_alpha", 8)) : null,
        };
    }

    /// <summary>Writes the LoraConfig fields of <paramref name="writer"/>'s adapter.</summary>
    /// <param name="writer">The adapter being saved.</param>
    /// <param name="useDora">The value of <c>use_dora</c>.</param>
    /// <exception cref="PeftConfigurationException">Layers disagree on a setting PEFT stores once.</exception>
    public static void Write(AdapterConfigWriter writer, bool useDora)
    {
        ArgumentNullException.ThrowIfNull(writer);
        LoRAOptions Of(PeftAdapterOptions o) => o switch
        {
            LoRAOptions lora => lora,
            ILoRAFormatOptions variant => variant.AsLoRA,
            _ => throw new PeftConfigurationException($"{o.Method.Name} options cannot be written as LoraConfig fields."),
        };
        bool rs = writer.Same("use_rslora", o => Of(o).UseRsLora);
        var init = writer.Same("init_lora_weights", o => (Of(o).Init, Of(o).PissaIterations));
        var loftq = writer.Same("loftq_config", o => (Of(o).LoftQBits, Of(o).LoftQIterations));
        var corda = writer.Same("corda_config", o => Of(o).CorDAMethod);
        double dropout = writer.Same("lora_dropout", o => Of(o).Dropout);
        var eva = init.Item1 == LoRAInit.EVA ? writer.Same(EvaConfig.ConfigField, o => Of(o).Eva) : null;
        // After EVA, r and lora_alpha stay the declared values and the layers whose rank (alpha) EVA changed are the patterns, as
        // PEFT writes them; otherwise the most common value is the default.
        writer.WithPattern("r", "rank_pattern", o => Of(o).Rank, v => v, eva?.DeclaredRank);
        writer.WithPattern("lora_alpha", "alpha_pattern", o => Of(o).Alpha, v => v, eva?.DeclaredAlpha);
        writer.Fields["lora_dropout"] = dropout;
        writer.Fields["use_rslora"] = rs;
        writer.Fields["use_dora"] = useDora;
        writer.Fields["fan_in_fan_out"] = writer.FanInFanOut();
        writer.Fields["bias"] = "none";
        writer.Fields["lora_bias"] = false;
        writer.Fields["init_lora_weights"] = init.Item1 switch
        {
            LoRAInit.Gaussian => "gaussian",
            LoRAInit.Random => false,
            LoRAInit.PiSSA or LoRAInit.OLoRA or LoRAInit.LoftQ or LoRAInit.CorDA => LoRABaseInitialization.PeftName(init.Item1, init.Item2),
            LoRAInit.EVA => "eva",
            _ => true,
        };
        writer.Fields["layers_to_transform"] = null;
        writer.Fields["layers_pattern"] = null;

        // The rest of PEFT 0.20's LoraConfig, at its defaults: features this library does not implement, written so that
        // the file has exactly the keys PEFT's own save gives.
        writer.Fields["megatron_config"] = null;
        writer.Fields["megatron_core"] = "megatron.core";
        writer.Fields["trainable_token_indices"] = null;
        // PEFT's LoftQConfig: {} unless init_lora_weights is "loftq", which requires it.
        writer.Fields["loftq_config"] = init.Item1 == LoRAInit.LoftQ
            ? new JsonObject { ["loftq_bits"] = loftq.Item1, ["loftq_iter"] = loftq.Item2 }
            : new JsonObject();
        // PEFT's EvaConfig: null unless init_lora_weights is "eva" (its LoraConfig then fills in the defaults).
        writer.Fields[EvaConfig.ConfigField] = init.Item1 == LoRAInit.EVA ? (eva?.Config ?? new EvaConfig()).ToJson() : null;
        // PEFT's CordaConfig (asdict): null unless init_lora_weights is "corda". The preprocessing settings (files, flags) are
        // CorDASettings at calibration time here; the file records PEFT's defaults for them and the adapter's mode.
        writer.Fields["corda_config"] = init.Item1 == LoRAInit.CorDA
            ? new JsonObject
            {
                ["cache_file"] = null,
                ["covariance_file"] = null,
                ["corda_method"] = CorDAInitialization.PeftName(corda),
                ["verbose"] = false,
                ["use_float16_for_covariance"] = false,
                ["prune_temporary_fields"] = true,
            }
            : null;
        writer.Fields["lora_ga_config"] = null;
        writer.Fields["velora_config"] = null;
        writer.Fields["alora_invocation_tokens"] = null;
        writer.Fields["use_qalora"] = false;
        writer.Fields["qalora_group_size"] = 16;
        writer.Fields["monteclora_config"] = null;
        writer.Fields["layer_replication"] = null;
        writer.Fields["target_parameters"] = null;
        writer.Fields["use_bdlora"] = null;
        writer.Fields["arrow_config"] = null;
        writer.Fields["ensure_weight_tying"] = false;
    }

    /// <summary>The differences between a file's LoRA settings and the model's adapter that change the update computed from
    /// the same tensors (rank, alpha, rsLoRA).</summary>
    /// <param name="path">The module path.</param>
    /// <param name="file">The file's options for it.</param>
    /// <param name="model">The model's options (null when of another kind).</param>
    /// <returns>One line per difference.</returns>
    public static IEnumerable<string> Mismatches(string path, LoRAOptions file, LoRAOptions? model)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (model is null)
        {
            yield return $"{path}: the model's adapter is not a LoRA adapter";
            yield break;
        }

        if (file.Rank != model.Rank) yield return $"{path}: r is {file.Rank} in the config, {model.Rank} in the model";
        if (file.Alpha != model.Alpha) yield return $"{path}: lora_alpha is {file.Alpha} in the config, {model.Alpha} in the model";
        if (file.UseRsLora != model.UseRsLora) yield return $"{path}: use_rslora is {Json(file.UseRsLora)} in the config, {Json(model.UseRsLora)} in the model";
        if ((file.RewritesBase || model.RewritesBase)
            && (file.Init != model.Init || file.PissaIterations != model.PissaIterations || file.LoftQBits != model.LoftQBits || file.LoftQIterations != model.LoftQIterations
                || file.CorDAMethod != model.CorDAMethod))
        {
            yield return $"{path}: init_lora_weights is {InitText(file)} in the config, {InitText(model)} in the model; an initialisation that rewrites the base " +
                "weight leaves another residual, so the file's A and B belong to another base (PiSSA/OLoRA/CorDA files: LoRAConversion makes a plain LoRA for the original base)";
        }

        static string Json(bool value) => value ? "true" : "false";
        static string InitText(LoRAOptions o) => LoRABaseInitialization.PeftName(o.Init, o.PissaIterations) is { } n
            ? o.Init switch
            {
                LoRAInit.LoftQ => $"\"{n}\" (loftq_bits {o.LoftQBits}, loftq_iter {o.LoftQIterations})",
                LoRAInit.CorDA => $"\"{n}\" (corda_method \"{CorDAInitialization.PeftName(o.CorDAMethod)}\")",
                _ => $"\"{n}\"",
            }
            : o.Init.ToString();
    }

    private static (LoRAInit Init, int PissaIterations) ReadInit(AdapterConfig config)
    {
        var node = config.Raw["init_lora_weights"];
        if (node is null) return (LoRAInit.KaimingUniform, 0);
        string? text = node.GetValueKind() == JsonValueKind.String ? node.GetValue<string>() : null;
        const string Niter = "pissa_niter_";
        if (text is not null && text.StartsWith(Niter, StringComparison.Ordinal))
        {
            string digits = text[Niter.Length..];
            if (digits.Length > 0 && digits.Length <= 6 && digits.All(char.IsAsciiDigit) && int.Parse(digits, System.Globalization.CultureInfo.InvariantCulture) is int k and >= 1)
                return (LoRAInit.PiSSA, k);
            throw config.Unsupported("init_lora_weights", $"\"{text}\" needs a positive number of power iterations after \"{Niter}\" (e.g. \"pissa_niter_4\").");
        }

        return node.GetValueKind() switch
        {
            JsonValueKind.True => (LoRAInit.KaimingUniform, 0),
            JsonValueKind.False => (LoRAInit.Random, 0),
            JsonValueKind.String when text == "gaussian" => (LoRAInit.Gaussian, 0),
            JsonValueKind.String when text == "pissa" => (LoRAInit.PiSSA, 0),
            JsonValueKind.String when text == "olora" => (LoRAInit.OLoRA, 0),
            JsonValueKind.String when text == "loftq" => (LoRAInit.LoftQ, 0),
            JsonValueKind.String when text == "eva" => (LoRAInit.EVA, 0),
            JsonValueKind.String when text == "corda" => (LoRAInit.CorDA, 0),
            _ => throw config.Unsupported("init_lora_weights",
                "true, false, \"gaussian\", \"pissa\", \"pissa_niter_K\", \"olora\", \"loftq\", \"eva\" and \"corda\" are."),
        };
    }

    /// <summary>PEFT's <c>corda_config</c> for <c>init_lora_weights="corda"</c> (PEFT uses its defaults when it is null): every
    /// field checked by type (<c>cache_file</c> and <c>covariance_file</c> strings or null, <c>corda_method</c> "ipm" or "kpm",
    /// <c>verbose</c>, <c>use_float16_for_covariance</c> and <c>prune_temporary_fields</c> booleans); the mode is the adapter's,
    /// the rest steer preprocessing (<see cref="CorDASettings"/>) and do not change what the file's tensors mean.</summary>
    private static CorDAMethod ReadCorDA(AdapterConfig config)
    {
        var node = config.Raw["corda_config"];
        if (node is null) return CorDAMethod.Ipm;
        if (node is not JsonObject corda)
            throw config.Unsupported("corda_config", $"it must be an object (PEFT's CordaConfig) or null, not {node.ToJsonString()}.");
        var fields = new JsonFields(corda, (field, problem) => config.Unsupported("corda_config", problem + "."));
        fields.String("cache_file");
        fields.String("covariance_file");
        fields.Bool("verbose");
        fields.Bool("use_float16_for_covariance");
        fields.Bool("prune_temporary_fields");
        return fields.String("corda_method") switch
        {
            null or "ipm" => CorDAMethod.Ipm,
            "kpm" => CorDAMethod.Kpm,
            var other => throw config.Unsupported("corda_config", $"\"corda_method\" must be \"ipm\" or \"kpm\", not \"{other}\"."),
        };
    }

    /// <summary>PEFT's <c>loftq_config</c> for <c>init_lora_weights="loftq"</c> (required then, as PEFT's LoraConfig requires it):
    /// <c>loftq_bits</c> 4 or 8 (default 4), <c>loftq_iter</c> at least 1 (default 1).</summary>
    private static (int Bits, int Iterations) ReadLoftQ(AdapterConfig config)
    {
        var node = config.Raw["loftq_config"];
        if (node is not JsonObject loftq || loftq.Count == 0)
            throw config.Unsupported("loftq_config", "init_lora_weights \"loftq\" needs a loftq_config object with loftq_bits and loftq_iter, as PEFT's LoraConfig requires (e.g. {\"loftq_bits\": 4, \"loftq_iter\": 1}).");
        int bits = Integer(loftq, "loftq_bits", 4);
        int iterations = Integer(loftq, "loftq_iter", 1);
        if (bits is not (4 or 8))
            throw config.Unsupported("loftq_config", $"loftq_bits is {bits}; 4 (NF4) and 8 (int8) are (PEFT's 2-bit normal-float map has no storage format here).");
        if (iterations < 1)
            throw config.Unsupported("loftq_config", $"loftq_iter is {iterations}; it must be at least 1.");
        return (bits, iterations);

        int Integer(JsonObject o, string name, int fallback)
        {
            var value = o[name];
            if (value is null) return fallback;
            if (value.GetValueKind() == JsonValueKind.Number && value.AsValue().TryGetValue(out int n)) return n;
            throw config.Unsupported("loftq_config", $"{name} must be an integer, got {value.ToJsonString()}.");
        }
    }
}

/// <summary>Options of a method stored in PEFT's LoraConfig format (a LoRA variant): their LoRA part.</summary>
public interface ILoRAFormatOptions
{
    /// <summary>The rank, alpha, dropout, scaling rule and initialisation as LoRA options.</summary>
    LoRAOptions AsLoRA { get; }
}
