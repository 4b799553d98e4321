using System.Text.Json.Nodes;
using Peft.Models.Llama;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Cli.Tests;

/// <summary><c>peft inspect</c> of a PEFT adaption-prompt directory (its fields, one module per attention, the tensors and
/// the count) and <c>peft merge</c>'s refusal (there is no weight update to merge).</summary>
public sealed class AdaptionPromptCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Inspect_shows_the_fields_each_attention_and_the_count_and_merge_refuses_it()
    {
        manual_seed(2);
        using var model = new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 64, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 3, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64,
        });
        model.AddAdaptionPrompt(new AdaptionPromptConfig(AdapterLen: 6, AdapterLayers: 2));
        model.SaveAdaptionPrompt(_dir["adaption"], options: new AdapterSaveOptions { BaseModelNameOrPath = "tiny/llama", TaskType = "CAUSAL_LM" });

        var json = CliRunner.InspectJson(_dir["adaption"]);
        Assert.Equal("ADAPTION_PROMPT", json["peft_type"]!.GetValue<string>());
        Assert.Equal("AdaptionPrompt", json["method"]!.GetValue<string>());
        Assert.Equal("tiny/llama", json["base_model"]!.GetValue<string>());
        Assert.Equal(6, json["adapter_len"]!.GetValue<int>());
        Assert.Equal(2, json["adapter_layers"]!.GetValue<int>());
        Assert.Equal("self_attn", json["target_modules"]!.GetValue<string>());
        Assert.Equal(["model.layers.1.self_attn", "model.layers.2.self_attn"], json["modules"]!.AsArray().Select(m => m!["module"]!.GetValue<string>()));
        Assert.Equal(["adaption_gate", "adaption_prompt"], json["modules"]![0]!["tensors"]!.AsArray().Select(t => t!.GetValue<string>()));
        Assert.Equal(2 * (6 * 32 + 1), json["trainable_parameters"]!.GetValue<long>());

        var text = CliRunner.Run("inspect", _dir["adaption"]);
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("peft_type: ADAPTION_PROMPT", text.Output, StringComparison.Ordinal);
        Assert.Contains("base_model.model.model.layers.2.self_attn.adaption_prompt  F32   [1, 6, 32]", text.Output, StringComparison.Ordinal);
        Assert.Contains("trainable parameters: 386", text.Output, StringComparison.Ordinal);

        // A bad field is shown with the reason rather than failing the report.
        string config = Path.Combine(_dir["adaption"], AdapterFiles.ConfigFileName);
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"adapter_len\": 6", "\"adapter_len\": 0", StringComparison.Ordinal));
        var bad = JsonNode.Parse(CliRunner.Run("inspect", _dir["adaption"], "--json").Output)!.AsObject();
        Assert.Contains("adapter_len", bad["settings_error"]!.GetValue<string>(), StringComparison.Ordinal);

        SafetensorsFile.Write(_dir["base.safetensors"], [new("model.embed_tokens.weight", zeros(64, 32))]);
        var merge = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adaption"], "-o", _dir["merged.safetensors"]);
        Assert.NotEqual(0, merge.ExitCode);
        Assert.Contains("nothing to merge", merge.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir["merged.safetensors"]));
    }
}
