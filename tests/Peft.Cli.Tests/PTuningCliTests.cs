using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Cli.Tests;

/// <summary>An input embedding with a P-tuning prompt declared by attribute: 3 virtual tokens, LSTM encoder of width 5.</summary>
public sealed partial class PTuningCliNet : Module<Tensor, Tensor>
{
    [PTuning(3, 5, EncoderType = PromptEncoderType.LSTM)]
    private Module<Tensor, Tensor> embed = Embedding(30, 8);

    public PTuningCliNet() : base(nameof(PTuningCliNet)) => InitializePeft();

    public override Tensor forward(Tensor ids) => embed.call(ids);
}

/// <summary><c>peft inspect</c> and <c>peft merge</c> on a P-tuning (P_TUNING) adapter: inspect reports the encoder's settings
/// and the saved prompt (the encoder's output, the file's only tensor); merge is refused, since a prompt is not a weight.</summary>
public sealed class PTuningCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Inspect_reports_the_encoder_settings_and_the_saved_prompt()
    {
        Seeding.SetSeed(3);
        using var model = new PTuningCliNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 7);
        var json = CliRunner.InspectJson(_dir["adapter"]);
        Assert.Equal("P_TUNING", json["peft_type"]!.GetValue<string>());
        Assert.Equal(8, json["token_dim"]!.GetValue<int>());
        Assert.Equal(3, json["num_virtual_tokens"]!.GetValue<int>());
        Assert.Equal("LSTM", json["encoder_reparameterization_type"]!.GetValue<string>());
        Assert.Equal(5, json["encoder_hidden_size"]!.GetValue<int>());
        var tensors = CliRunner.InspectedShapes(json);
        Assert.Equal(new long[] { 3, 8 }, Assert.Single(tensors).Value);
        Assert.Equal("prompt_embeddings", tensors.Keys.Single());
        Assert.Equal(3 * 8, json["trainable_parameters"]!.GetValue<long>());
    }

    [Fact]
    public void Merge_is_refused_with_the_reason_and_writes_nothing()
    {
        Seeding.SetSeed(4);
        using var model = new PTuningCliNet();
        MethodMergeChecks.RandomizeAndSave(model, _dir, seed: 8);
        var result = CliRunner.Run("merge", "--base", _dir["base.safetensors"], "--adapter", _dir["adapter"], "--output", _dir["m.safetensors"]);
        Assert.Equal(ExitCodes.Failure, result.ExitCode);
        Assert.Contains("prompt-learning adapter (PTuning)", result.Error);
        Assert.Contains("nothing to merge", result.Error);
        Assert.False(File.Exists(_dir["m.safetensors"]));
    }
}
