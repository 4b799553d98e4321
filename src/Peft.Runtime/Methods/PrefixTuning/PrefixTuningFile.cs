using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft;

/// <summary>A PEFT prefix-tuning directory as read and checked before anything touches a model: its fields and the table's
/// shape (<see cref="PrefixTuning"/>'s remarks give the layout). Also what <c>peft inspect</c> shows.</summary>
public sealed class PrefixTuningFile
{
    private PrefixTuningFile(string configPath, string weightsPath)
    {
        ConfigPath = configPath;
        WeightsPath = weightsPath;
    }

    /// <summary>The configuration file.</summary>
    public string ConfigPath { get; }

    /// <summary>The tensor file.</summary>
    public string WeightsPath { get; }

    /// <summary><c>num_virtual_tokens</c>.</summary>
    public int VirtualTokens { get; private init; }

    /// <summary><c>token_dim</c>: one layer's key (or value) width.</summary>
    public long TokenDim { get; private init; }

    /// <summary><c>num_attention_heads</c>: the key/value heads.</summary>
    public int Heads { get; private init; }

    /// <summary><c>num_layers</c>.</summary>
    public int Layers { get; private init; }

    /// <summary><c>prefix_projection</c> (the table in the file is the MLP's output either way).</summary>
    public bool Projection { get; private init; }

    /// <summary><c>encoder_hidden_size</c>, or null when absent.</summary>
    public long? EncoderHiddenSize { get; private init; }

    /// <summary><c>task_type</c>, or null.</summary>
    public string? TaskType { get; private init; }

    /// <summary><c>base_model_name_or_path</c>, or null.</summary>
    public string? BaseModel { get; private init; }

    /// <summary>Whether <paramref name="directory"/>'s configuration says <c>peft_type</c> "PREFIX_TUNING".</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>True for a prefix-tuning directory.</returns>
    public static bool IsPrefixTuning(string directory)
    {
        string path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        if (!File.Exists(path)) return false;
        try
        {
            return JsonFile.ReadObject(path, JsonFileKind.AdapterConfig)["peft_type"] is JsonValue v && v.TryGetValue(out string? t) && t == PrefixTuningConfig.PeftType;
        }
        catch (AdapterFormatException)
        {
            return false;
        }
    }

    /// <summary>Reads and checks <paramref name="directory"/>: every field PEFT writes, and <c>prompt_embeddings</c>
    /// <c>[num_virtual_tokens, num_layers · 2 · token_dim]</c> as the only tensor.</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>The file.</returns>
    /// <exception cref="AdapterFormatException">A file is missing or a field or the tensor is wrong (the message names it).</exception>
    public static PrefixTuningFile Read(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string configPath = Path.Combine(directory, AdapterFiles.ConfigFileName);
        string weightsPath = Path.Combine(directory, AdapterFiles.WeightsFileName);
        if (!File.Exists(configPath)) throw new AdapterFormatException(configPath, null, "the configuration file is missing; a prefix-tuning directory holds adapter_config.json and adapter_model.safetensors.");
        var json = JsonFields.ReadAdapterConfig(configPath);
        string type = json.RequiredString("peft_type");
        if (type != PrefixTuningConfig.PeftType)
        {
            throw new AdapterFormatException(configPath, "peft_type", $"\"peft_type\" is '{type}', not '{PrefixTuningConfig.PeftType}': load other PEFT adapters with AdapterFiles.Load.");
        }

        if (json.Int("num_transformer_submodules", 1) is int submodules && submodules != 1)
        {
            throw new AdapterFormatException(configPath, "num_transformer_submodules", $"\"num_transformer_submodules\" is {submodules}; only 1 is supported (encoder-decoder models take a prefix per stack).");
        }

        const int maxWidth = 1 << 20, maxCount = 1 << 12;
        var file = new PrefixTuningFile(configPath, weightsPath)
        {
            VirtualTokens = json.RequiredInt("num_virtual_tokens", 1, PrefixTuningConfig.MaxVirtualTokens),
            TokenDim = json.RequiredInt("token_dim", 1, maxWidth),
            Heads = json.RequiredInt("num_attention_heads", 1, maxCount),
            Layers = json.RequiredInt("num_layers", 1, maxCount),
            Projection = json.Bool("prefix_projection") ?? false,
            EncoderHiddenSize = json.Int("encoder_hidden_size", 1, maxWidth),
            TaskType = json.String("task_type"),
            BaseModel = json.String("base_model_name_or_path"),
        };
        if (file.TokenDim % file.Heads != 0)
        {
            throw new AdapterFormatException(configPath, "token_dim", $"\"token_dim\" is {file.TokenDim}, not a multiple of num_attention_heads {file.Heads}.");
        }

        if (!File.Exists(weightsPath)) throw new AdapterFormatException(weightsPath, null, "the tensor file is missing; a prefix-tuning directory holds adapter_config.json and adapter_model.safetensors.");
        using var reader = SafetensorsFile.Open(weightsPath);
        long[] expected = [file.VirtualTokens, (long)file.Layers * 2 * file.TokenDim];
        var names = reader.Tensors.Select(t => t.Name).ToList();
        var table = reader.Tensors.FirstOrDefault(t => t.Name == PrefixTuning.TableName);
        if (table is null || names.Count != 1 || !table.Shape.SequenceEqual(expected))
        {
            throw new AdapterFormatException(weightsPath, PrefixTuning.TableName,
                $"the file holds [{string.Join(", ", reader.Tensors.Select(t => $"{t.Name} [{string.Join(", ", t.Shape)}]"))}]; num_virtual_tokens {file.VirtualTokens}, " +
                $"num_layers {file.Layers} and token_dim {file.TokenDim} in {configPath} call for exactly '{PrefixTuning.TableName}' [{string.Join(", ", expected)}].");
        }

        return file;
    }

    /// <summary>Checks the file against the model's attention: one layer per block, each with <c>num_attention_heads</c>
    /// key/value heads of width <c>token_dim / num_attention_heads</c>.</summary>
    /// <param name="attentions">The model's attention insertion points, bottom first.</param>
    /// <exception cref="AdapterFormatException">A field does not fit (the message names it and the model's value).</exception>
    public void CheckFits(IReadOnlyList<AttentionInsertions> attentions)
    {
        ArgumentNullException.ThrowIfNull(attentions);
        if (attentions.Count != Layers)
        {
            throw new AdapterFormatException(ConfigPath, "num_layers", $"\"num_layers\" is {Layers}; the model has {attentions.Count} blocks. Load the prefix into the model it was trained on.");
        }

        foreach (var a in attentions)
        {
            if (a.Geometry.KeyValueWidth != TokenDim || a.Geometry.KeyValueHeads != Heads)
            {
                throw new AdapterFormatException(ConfigPath, "token_dim",
                    $"token_dim {TokenDim} with num_attention_heads {Heads} does not fit layer {a.Geometry.Layer}'s attention ({a.Geometry.KeyValueHeads} key/value heads of width " +
                    $"{a.Geometry.HeadDim}: token_dim {a.Geometry.KeyValueWidth}). Load the prefix into the model it was trained on.");
            }
        }
    }
}
