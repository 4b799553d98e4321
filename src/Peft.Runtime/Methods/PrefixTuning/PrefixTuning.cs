using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Checkpoints;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Adding, saving and loading prefix tuning (<see cref="PrefixTuningConfig"/>) on any model whose blocks offer attention
/// insertion points (<see cref="AttentionInsertions"/>: every <c>Peft.Models</c> family, or a user's own stack).
/// </summary>
/// <remarks>
/// Files are PEFT's: <c>adapter_config.json</c> with <c>peft_type</c> "PREFIX_TUNING", <c>num_virtual_tokens</c>,
/// <c>token_dim</c> (the key/value width of one layer: <c>kv_heads · head_dim</c>, as PEFT sets it for grouped-query
/// attention), <c>num_attention_heads</c> (the key/value heads), <c>num_layers</c>, <c>encoder_hidden_size</c>,
/// <c>prefix_projection</c>, <c>num_transformer_submodules</c> 1; and <c>adapter_model.safetensors</c> with one tensor
/// <c>prompt_embeddings</c> <c>[num_virtual_tokens, num_layers · 2 · token_dim]</c>: the table PEFT's
/// <c>get_prompt_embedding_to_save</c> writes (the MLP's output when projected; PEFT loads such a file in inference mode as
/// that table, and so does <see cref="LoadPrefixTuning"/>).
/// </remarks>
public static class PrefixTuning
{
    /// <summary>The tensor's name in the file.</summary>
    public const string TableName = "prompt_embeddings";

    /// <summary>
    /// Gives every block's attention a prefix of <see cref="PrefixTuningConfig.VirtualTokens"/> positions named
    /// <paramref name="adapterName"/>, then applies the trainability rule (the prefix trains, the base model is frozen).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="config">The configuration.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>The layers' prefixes, bottom first.</returns>
    /// <exception cref="PeftConfigurationException">The configuration is invalid, a block offers no attention insertion points,
    /// or the name is taken; nothing is added then.</exception>
    public static IReadOnlyList<PrefixAdapter> AddPrefixTuning(this nn.Module model, PrefixTuningConfig config, string adapterName = AdapterNames.Default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        AdapterNameRules.Validate(adapterName, null);
        var (_, attentions) = TransformerBlocks.FindAttentions(model);
        var (_, blocks) = TransformerBlocks.Find(model);
        // Other inserted adapters may share the name: they then act as one adapter for the switches (a MAM adapter is a
        // prefix and parallel adapters under one name).
        if (model.InsertedAdapters().Any(a => a.Adapter.AdapterName == adapterName && a.Adapter is PrefixAdapter))
        {
            throw new PeftConfigurationException($"The model already has a prefix named '{adapterName}'; pass another adapterName.", null, adapterName);
        }

        long tableWidth = attentions.Sum(a => 2 * a.Geometry.KeyValueWidth);
        long tokenDim = attentions.Max(a => a.Geometry.KeyValueWidth);
        var encoder = config.Projection
            ? new PrefixEncoder(config.VirtualTokens, tokenDim, config.EncoderHiddenSize ?? tokenDim, tableWidth, config.ZeroInit)
            : null;
        var created = new List<PrefixAdapter>(attentions.Count);
        long offset = 0;
        for (int i = 0; i < attentions.Count; i++)
        {
            var geometry = attentions[i].Geometry;
            created.Add(encoder is null
                ? PrefixAdapter.Direct(adapterName, geometry, config.VirtualTokens, offset, config.ZeroInit)
                : PrefixAdapter.Through(adapterName, geometry, config.VirtualTokens, offset, encoder, owns: i == 0));
            offset += 2 * geometry.KeyValueWidth;
        }

        for (int i = 0; i < attentions.Count; i++)
        {
            if (((nn.Module)blocks[i]).parameters().FirstOrDefault()?.device is { } device) created[i].to(device);
            attentions[i].Insert(created[i]);
        }

        model.ApplyTrainability();
        return created;
    }

    /// <summary>The model's prefix table for <paramref name="adapterName"/> [num_virtual_tokens, Σ 2·kv_width]: every
    /// layer's columns, bottom first (PEFT's <c>prompt_embeddings</c>).</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The table (part of the autograd graph).</returns>
    /// <exception cref="PeftConfigurationException">The model has no prefix of that name.</exception>
    public static Tensor PrefixTable(this nn.Module model, string adapterName = AdapterNames.Default)
    {
        var prefixes = Prefixes(model, adapterName);
        return cat(prefixes.Select(p => p.Table()).ToList(), 1);
    }

    /// <summary>Writes the prefix named <paramref name="adapterName"/> to <paramref name="directory"/> in PEFT's layout.</summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory (created when missing).</param>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="baseModelNameOrPath">PEFT's <c>base_model_name_or_path</c>, or null.</param>
    /// <param name="taskType">PEFT's <c>task_type</c> (e.g. "CAUSAL_LM", "SEQ_CLS"), or null.</param>
    /// <exception cref="PeftConfigurationException">The model has no prefix of that name, or its layers differ in key/value
    /// width (PEFT's layout has one <c>token_dim</c>).</exception>
    public static void SavePrefixTuning(this nn.Module model, string directory, string adapterName = AdapterNames.Default, string? baseModelNameOrPath = null, string? taskType = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var prefixes = Prefixes(model, adapterName);
        var first = prefixes[0].Geometry;
        var odd = prefixes.FirstOrDefault(p => p.Geometry.KeyValueWidth != first.KeyValueWidth || p.Geometry.KeyValueHeads != first.KeyValueHeads);
        if (odd is not null)
        {
            throw new PeftConfigurationException(
                $"Prefix '{adapterName}': layer 0 has {first.KeyValueHeads} key/value heads of width {first.HeadDim} and layer {odd.Geometry.Layer} has " +
                $"{odd.Geometry.KeyValueHeads} of width {odd.Geometry.HeadDim}; PEFT's PREFIX_TUNING layout has one token_dim for every layer. " +
                "Save the model's weights instead (ModelWeights.Save), which keep each layer's prefix under its own path.",
                null, adapterName);
        }

        var encoder = prefixes[0].Encoder;
        Directory.CreateDirectory(directory);
        using (no_grad())
        {
            using var table = model.PrefixTable(adapterName).detach().cpu().contiguous();
            SafetensorsFile.Write(Path.Combine(directory, AdapterFiles.WeightsFileName), [new(TableName, table)]);
        }

        var json = new JsonObject
        {
            ["peft_type"] = PrefixTuningConfig.PeftType,
            ["task_type"] = taskType,
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["revision"] = null,
            ["inference_mode"] = true,
            ["num_virtual_tokens"] = prefixes[0].VirtualTokens,
            ["token_dim"] = first.KeyValueWidth,
            ["num_transformer_submodules"] = 1,
            ["num_attention_heads"] = first.KeyValueHeads,
            ["num_layers"] = prefixes.Count,
            ["encoder_hidden_size"] = encoder is null ? first.KeyValueWidth : HiddenSize(encoder),
            ["prefix_projection"] = encoder is not null,
        };
        AtomicFile.WriteAllText(Path.Combine(directory, AdapterFiles.ConfigFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// Reads a PEFT prefix-tuning directory and gives the model its prefix (as PEFT's inference mode does: the saved table,
    /// trainable from there), checking every field and the table's shape against the model before anything is added.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The directory.</param>
    /// <param name="adapterName">The name to give the prefix.</param>
    /// <returns>The layers' prefixes.</returns>
    /// <exception cref="AdapterFormatException">A file is missing, a field is wrong or does not fit the model (the message names
    /// the file, the field and the model's value).</exception>
    public static IReadOnlyList<PrefixAdapter> LoadPrefixTuning(this nn.Module model, string directory, string adapterName = AdapterNames.Default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        var file = PrefixTuningFile.Read(directory);
        IReadOnlyList<AttentionInsertions> attentions;
        try
        {
            attentions = TransformerBlocks.FindAttentions(model).Attentions;
        }
        catch (PeftConfigurationException e)
        {
            throw new AdapterFormatException(file.ConfigPath, null, e.Message, e);
        }

        file.CheckFits(attentions);
        var prefixes = model.AddPrefixTuning(new PrefixTuningConfig(file.VirtualTokens), adapterName);
        using var reader = SafetensorsFile.Open(file.WeightsPath);
        using var table = reader.ReadTensor(TableName);
        using (no_grad())
        {
            foreach (var p in prefixes)
            {
                p.OwnTable!.copy_(table.narrow(1, p.ColumnOffset, p.Width));
            }
        }

        return prefixes;
    }

    private static long HiddenSize(PrefixEncoder encoder) => encoder.named_parameters().First(p => p.name == "transform.0.weight").parameter.shape[0];

    private static List<PrefixAdapter> Prefixes(nn.Module model, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(adapterName);
        var prefixes = model.InsertedAdapters().Select(a => a.Adapter).OfType<PrefixAdapter>().Where(p => p.AdapterName == adapterName).ToList();
        if (prefixes.Count == 0)
        {
            throw new PeftConfigurationException($"The model has no prefix named '{adapterName}' (add one with AddPrefixTuning or LoadPrefixTuning).", null, adapterName);
        }

        return prefixes;
    }
}
