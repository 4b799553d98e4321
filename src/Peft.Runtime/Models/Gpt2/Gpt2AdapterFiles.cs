using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;

namespace Peft.Models.Gpt2;

/// <summary>
/// PEFT adapter files for <see cref="Gpt2LMHeadModel"/>: <see cref="AdapterFiles"/> with the config PEFT writes for
/// GPT-2. PEFT wraps GPT-2's <c>Conv1D</c> layers with <c>fan_in_fan_out: true</c> (it sets the flag itself when a
/// target is a Conv1D); the flag only says the <i>base</i> weight is stored [in, out] and that the merged update is
/// transposed. <c>lora_A</c> [r, in] and <c>lora_B</c> [out, r] are the same tensors either way, so the files are the
/// ones <see cref="AdapterFiles"/> writes with the flag set and <c>task_type</c> "CAUSAL_LM".
/// </summary>
public static class Gpt2AdapterFiles
{
    /// <summary>
    /// Saves adapter <paramref name="adapterName"/> like <see cref="AdapterFiles.Save"/>, then marks the config as PEFT
    /// does for GPT-2: <c>fan_in_fan_out: true</c> and <c>task_type</c> "CAUSAL_LM" unless
    /// <paramref name="options"/> names another.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The adapter directory (created if needed).</param>
    /// <param name="adapterName">The adapter to save.</param>
    /// <param name="options">Metadata; <see cref="AdapterSaveOptions.TaskType"/> defaults to "CAUSAL_LM".</param>
    public static void Save(Gpt2LMHeadModel model, string directory, string adapterName = AdapterNames.Default, AdapterSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        options ??= new AdapterSaveOptions();
        if (options.TaskType is null) options = options with { TaskType = "CAUSAL_LM" };
        AdapterFiles.Save(model, directory, adapterName, options);

        var path = Path.Combine(directory, AdapterFiles.ConfigFileName);
        var json = (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;
        json["fan_in_fan_out"] = true;
        AdapterFiles.WriteAtomically(path, AdapterConfig.ToJson(json));
    }

    /// <summary>
    /// Loads a PEFT LoRA adapter for GPT-2 like <see cref="AdapterFiles.Load"/>, accepting <c>fan_in_fan_out: true</c>
    /// (PEFT's GPT-2 adapters), which <see cref="AdapterFiles.Load"/> refuses because it cannot know that the model's
    /// base weights were transposed from Conv1D on load. The returned config is the one that was loaded (with the
    /// flag cleared when it was set).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="directory">The adapter directory.</param>
    /// <param name="adapterName">The adapter to load into (created on the targeted layers when absent).</param>
    /// <param name="strict">Refuse missing, unexpected or mis-shaped tensors (default).</param>
    /// <remarks>
    /// With the flag set, the config (flag cleared) and a copy of the weights file are staged in a temporary directory
    /// that is deleted afterwards; the adapter files themselves are never modified.
    /// </remarks>
    public static AdapterLoadResult Load(Gpt2LMHeadModel model, string directory, string adapterName = AdapterNames.Default, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var configPath = Path.Combine(directory, AdapterFiles.ConfigFileName);
        if (!File.Exists(configPath)) return AdapterFiles.Load(model, directory, adapterName, strict);   // its own error

        JsonObject? json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject;
        }
        catch (JsonException)
        {
            return AdapterFiles.Load(model, directory, adapterName, strict);   // reports the bad JSON by file
        }
        if (json is null || json["fan_in_fan_out"] is not JsonValue flag || flag.GetValueKind() != JsonValueKind.True)
        {
            return AdapterFiles.Load(model, directory, adapterName, strict);
        }

        json["fan_in_fan_out"] = false;
        var staging = Path.Combine(Path.GetTempPath(), "peft-gpt2-adapter-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staging);
        try
        {
            var weights = Path.Combine(directory, AdapterFiles.WeightsFileName);
            if (File.Exists(weights)) File.Copy(weights, Path.Combine(staging, AdapterFiles.WeightsFileName));
            File.WriteAllText(Path.Combine(staging, AdapterFiles.ConfigFileName), AdapterConfig.ToJson(json));
            return AdapterFiles.Load(model, staging, adapterName, strict);
        }
        finally
        {
            try
            {
                Directory.Delete(staging, recursive: true);
            }
            catch (IOException)
            {
                // Best effort: a temporary copy.
            }
        }
    }
}
