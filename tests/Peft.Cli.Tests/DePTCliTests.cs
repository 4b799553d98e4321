using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>An input embedding with DePT declared by attribute: 3 prompt tokens, inputs of 6 tokens, rank 2.</summary>
public sealed partial class DePTNet : Module<Tensor, Tensor>
{
    [DePT(virtualTokens: 3, maxLength: 6, rank: 2, alpha: 4)]
    private Module<Tensor, Tensor> embed = Embedding(30, 8);

    public DePTNet() : base(nameof(DePTNet)) => InitializePeft();

    public override Tensor forward(Tensor ids) => embed.call(ids);
}

/// <summary><c>peft inspect</c> and <c>peft merge</c> on a DePT (PROMPT_TUNING_LORA) adapter: inspect reports the fork's
/// settings, tensors and trainable count; merge is refused, since the prompt and the position table are not weights.</summary>
public sealed class DePTCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Inspect_reports_the_prompt_the_table_and_the_settings()
    {
        Seeding.SetSeed(3);
        using var model = new DePTNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 7);
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("PROMPT_TUNING_LORA", json["peft_type"]!.GetValue<string>());
        Assert.Equal(8, json["token_dim"]!.GetValue<int>());
        Assert.Equal(6, json["max_length"]!.GetValue<int>());
        Assert.Equal(2, json["r"]!.GetValue<int>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(new long[] { 3, 8 }, tensors["prompt_embeddings"]);
        Assert.Equal(new long[] { 6, 2 }, tensors["prompt_encoder.lora_embedding_A"]);
        Assert.Equal(new long[] { 2, 8 }, tensors["prompt_encoder.lora_embedding_B"]);
        Assert.Equal(3 * 8 + 6 * 2 + 2 * 8, json["trainable_parameters"]!.GetValue<long>());
    }

    [Fact]
    public void Merge_is_refused_with_the_reason_and_writes_nothing()
    {
        Seeding.SetSeed(4);
        using var model = new DePTNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 8);
        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["m.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("prompt-learning adapter (DePT)", result.Error);
        Assert.Contains("nothing to merge", result.Error);
        Assert.False(File.Exists(_dir["m.safetensors"]));
    }
}
