using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft;

/// <summary>
/// EVA's settings, PEFT's <c>EvaConfig</c> (written as <c>eva_config</c> in adapter_config.json) with its defaults.
/// </summary>
/// <param name="Rho">The largest rank a layer may receive is <c>round(r · rho)</c>; at least 1 (1 keeps every layer at r: no
/// redistribution). PEFT's <c>rho</c>, default 2.</param>
/// <param name="Tau">A principal component has converged once the cosine similarity between its estimates of two consecutive
/// calibration batches is at least tau; in [0, 1]. PEFT's <c>tau</c>, default 0.99.</param>
/// <param name="UseLabelMask">Whether positions whose label is <paramref name="LabelMaskValue"/> are left out of the PCA. Here
/// the caller's forward callback applies it through <see cref="LayerInputCapture.RowMask"/> (<see cref="RowMask"/> builds the
/// mask); the value is recorded in the file. PEFT's <c>use_label_mask</c>, default true.</param>
/// <param name="LabelMaskValue">The label of ignored positions. PEFT's <c>label_mask_value</c>, default -100.</param>
/// <param name="Whiten">Divide each component by the square root of its singular value. PEFT's <c>whiten</c>, default false.</param>
/// <param name="AdjustScalingFactors">When a layer's rank changes from r to r', scale its alpha by r'/r so the LoRA scaling
/// alpha/r stays the same. PEFT's <c>adjust_scaling_factors</c>, default true.</param>
public sealed record EvaConfig(
    double Rho = 2.0,
    double Tau = 0.99,
    bool UseLabelMask = true,
    int LabelMaskValue = -100,
    bool Whiten = false,
    bool AdjustScalingFactors = true)
{
    /// <summary>The key of the config in adapter_config.json.</summary>
    public const string ConfigField = "eva_config";

    /// <summary>Checks the ranges PEFT's <c>EvaConfig</c> checks.</summary>
    /// <exception cref="PeftConfigurationException">Rho is below 1 or not finite, or tau is outside [0, 1].</exception>
    public void Validate()
    {
        if (!(Rho >= 1.0) || double.IsInfinity(Rho))
        {
            throw new PeftConfigurationException($"EvaConfig.Rho must be a finite number >= 1 (1 keeps every layer at its rank r), got {Rho}.");
        }

        if (!(Tau >= 0.0 && Tau <= 1.0))
        {
            throw new PeftConfigurationException($"EvaConfig.Tau must be in [0, 1] (the cosine similarity at which a component counts as converged), got {Tau}.");
        }
    }

    /// <summary>PEFT's default row mask for language modelling: the positions the attention mask keeps and, with
    /// <see cref="UseLabelMask"/>, whose label is not <see cref="LabelMaskValue"/>; for <see cref="LayerInputCapture.RowMask"/>.</summary>
    /// <param name="attentionMask">The attention mask <c>[batch, tokens]</c> (nonzero = real token), or null for all.</param>
    /// <param name="labels">The labels <c>[batch, tokens]</c>, or null.</param>
    /// <returns>A boolean mask <c>[batch, tokens]</c>, or null when neither is given; the caller disposes it.</returns>
    public TorchSharp.torch.Tensor? RowMask(TorchSharp.torch.Tensor? attentionMask, TorchSharp.torch.Tensor? labels)
    {
        TorchSharp.torch.Tensor? mask = attentionMask?.ne(0);
        if (UseLabelMask && labels is not null)
        {
            var keep = labels.ne(LabelMaskValue);
            if (mask is null) return keep;
            var both = mask.logical_and(keep);
            mask.Dispose();
            keep.Dispose();
            return both;
        }

        return mask;
    }

    /// <summary>The JSON object PEFT writes (its six fields, in its order).</summary>
    /// <returns>A new JSON object.</returns>
    public JsonObject ToJson() => new()
    {
        ["rho"] = Rho,
        ["tau"] = Tau,
        ["use_label_mask"] = UseLabelMask,
        ["label_mask_value"] = LabelMaskValue,
        ["whiten"] = Whiten,
        ["adjust_scaling_factors"] = AdjustScalingFactors,
    };

    /// <summary>Reads PEFT's <c>eva_config</c> (absent or null: the defaults, as PEFT's LoraConfig uses then).</summary>
    /// <param name="config">The adapter config.</param>
    /// <returns>The settings.</returns>
    /// <exception cref="AdapterFormatException">A field has the wrong type or range (the message names it).</exception>
    public static EvaConfig Read(AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var node = config.Raw[ConfigField];
        if (node is null) return new EvaConfig();
        if (node is not JsonObject obj)
        {
            throw config.Unsupported(ConfigField, $"it must be an object with rho, tau, use_label_mask, label_mask_value, whiten and adjust_scaling_factors, not {node.ToJsonString()}.");
        }

        var fields = new JsonFields(obj, (field, problem) => config.Unsupported($"{ConfigField}.{field}", problem + "."));
        var defaults = new EvaConfig();
        return new EvaConfig(
            fields.Number("rho", 1.0, minInclusive: true) ?? defaults.Rho,
            fields.Number("tau", 0.0, minInclusive: true, max: 1.0) ?? defaults.Tau,
            fields.Bool("use_label_mask") ?? defaults.UseLabelMask,
            fields.Int("label_mask_value", int.MinValue, int.MaxValue) ?? defaults.LabelMaskValue,
            fields.Bool("whiten") ?? defaults.Whiten,
            fields.Bool("adjust_scaling_factors") ?? defaults.AdjustScalingFactors);
    }
}

/// <summary>What an EVA initialisation recorded on a layer's options: the settings it ran with and the rank and alpha the adapter
/// was declared with (PEFT keeps those as <c>r</c> and <c>lora_alpha</c> and writes the layers EVA changed under
/// <c>rank_pattern</c> and <c>alpha_pattern</c>).</summary>
/// <param name="Config">The settings (<c>eva_config</c>).</param>
/// <param name="DeclaredRank">The declared rank r.</param>
/// <param name="DeclaredAlpha">The declared alpha.</param>
public sealed record EvaSettings(EvaConfig Config, int DeclaredRank, double DeclaredAlpha);
