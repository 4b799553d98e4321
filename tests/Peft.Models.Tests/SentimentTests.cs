using Peft;
using Peft.Data;
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

/// <summary>The sample's method table: names, what each applies to the pretrained encoder and what trains.</summary>
public sealed class SentimentMethodTests
{
    private static readonly string[] Texts = ["the fox jumped over the lazy dog", "lorem ipsum", "a truly wonderful film, I loved every minute of it"];

    private static float[] Run(UseLiteModel model)
    {
        var (ids, mask) = model.Batch(Texts);
        if (model.Encoder.RequiredInputLength() is int length)
        {
            // DePT's table covers exactly this many positions: pad (or truncate) as the sample does.
            ids.Dispose();
            mask.Dispose();
            (ids, mask) = SentimentExperiment.Batch(Texts.Select(t => model.Tokenizer.Encode(t).Select(i => (long)i).ToArray()).ToArray(), length);
        }

        using (ids)
        using (mask)
        using (no_grad())
        using (var output = model.Encoder.call(ids, mask))
        {
            return output.data<float>().ToArray();
        }
    }

    private static double MaxDifference(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs(p.First - p.Second));

    [Fact]
    public void Methods_have_distinct_lower_case_names_and_a_quick_subset()
    {
        var names = SentimentMethods.All.Select(m => m.Name).ToList();
        Assert.Equal(names.Distinct().Count(), names.Count);
        Assert.All(names, n => Assert.Equal(n.ToLowerInvariant(), n));
        Assert.Subset(names.ToHashSet(), new HashSet<string> { "probe", "lora", "lokr", "prompt", "full" });
        Assert.Subset(names.ToHashSet(), SentimentMethods.Quick.Select(m => m.Name).ToHashSet());
        Assert.Contains("probe", SentimentMethods.Quick.Select(m => m.Name));   // the baselines stay in the quick run
        Assert.Contains("full", SentimentMethods.Quick.Select(m => m.Name));
        Assert.All(SentimentMethods.All, m => Assert.Equal(m.Targets is not null, m.Trains == Trains.AdapterAndHead));
        Assert.All(SentimentMethods.All, m => Assert.Equal(m.Freezing is not null, m.Trains == Trains.Unfrozen));
        Assert.All(SentimentMethods.All, m => Assert.Equal(m.Selective is not null, m.Trains == Trains.Masked));
        Assert.All(SentimentMethods.All, m => Assert.Equal(m.Insert is not null, m.Trains == Trains.Inserted));
        Assert.Same(SentimentMethods.Get("lora"), SentimentMethods.Get("LoRA"));
        var unknown = Assert.Throws<ArgumentException>(() => SentimentMethods.Get("lorra")).Message;
        Assert.Contains("Unknown method 'lorra'. Methods: probe, lora", unknown);
        Assert.Null(SentimentMethods.Find("lorra"));
    }

    [Fact]
    public async Task Each_method_configures_its_own_trainable_part_on_a_fresh_encoder()
    {
        var cache = new NpmPackageCache();
        float[] plain;
        using (var model = await UseLiteModel.LoadAsync(cache)) plain = Run(model);
        const long head = 512 * 2 + 2;

        foreach (var method in SentimentMethods.All)
        {
            using var model = await UseLiteModel.LoadAsync(cache);
            using var classifier = new SentimentClassifier(model.Encoder);
            var trainable = SentimentExperiment.Configure(classifier, model, method);
            if (method.Calibrate is not null)
            {
                // EVA and CorDA initialise from data (CorDA's adapters wait for it): the test sentences stand in for the training batches.
                var ids = SentimentExperiment.Encode(model, Texts.Select(t => new SentimentExample(t, 0, "test")).ToArray());
                SentimentExperiment.Calibrate(classifier, method, ids, SentimentExperiment.Batches(ids, 2, new Random(7)));
                trainable = classifier.TrainableParameters().ToList();
            }

            long count = trainable.Sum(p => p.numel());
            float[] output = Run(model);
            var trainableSet = new HashSet<object>(trainable, ReferenceEqualityComparer.Instance);
            Assert.All(classifier.parameters(), p => Assert.Equal(trainableSet.Contains(p), p.requires_grad));
            switch (method.Name)
            {
                case "probe":
                    Assert.Equal(head, count);
                    Assert.Empty(classifier.AdapterNames());
                    Assert.True(MaxDifference(output, plain) == 0, "the probe changed the encoder");
                    break;
                case "full":
                    Assert.Equal(classifier.parameters().Sum(p => p.numel()), count);
                    Assert.Empty(classifier.AdapterNames());
                    break;
                case "lora":
                case "lokr":
                    // 12 projections; a fresh adapter leaves the pretrained output unchanged.
                    Assert.Equal(12, classifier.AdaptedLayers().Count(l => l.Layer.HasAdapter(AdapterNames.Default)));
                    Assert.True(MaxDifference(output, plain) < 1e-6, $"a fresh {method.Name} adapter changes the output");
                    Assert.Equal(classifier.AdapterParameters().Sum(p => p.numel()) + head, count);
                    if (method.Name == "lora") Assert.Equal(58_368 + head, count);
                    break;
                case "corda":
                case "corda-kpm":
                    // 12 projections; the calibrated adapter and the residual base compute the pretrained output (W_res + s·BA = W).
                    Assert.Equal(12, classifier.AdaptedLayers().Count(l => l.Layer.HasAdapter(AdapterNames.Default)));
                    Assert.True(MaxDifference(output, plain) < 1e-4, $"a fresh {method.Name} adapter changes the output by {MaxDifference(output, plain)}");
                    Assert.Equal(58_368 + head, count);
                    break;
                case "freeze-bottom":
                    // Telly-1: the embeddings and layer 0 are frozen; layer 1, the pooler and the head train; nothing else changes.
                    var encoder = classifier.Encoder;
                    long frozen = encoder.EmbeddingModules.Append(encoder.Blocks[0]).SelectMany(m => m.parameters()).Sum(p => p.numel());
                    Assert.Equal(classifier.parameters().Sum(p => p.numel()) - frozen, count);
                    Assert.Empty(classifier.AdapterNames());
                    Assert.True(MaxDifference(output, plain) == 0, "freezing changed the encoder");
                    break;
                case "spt":
                case "id3":
                    // Selective: the head trains from the start; the encoder's matrices are masked when the run starts.
                    Assert.Equal(head, count);
                    Assert.Empty(classifier.AdapterNames());
                    Assert.True(MaxDifference(output, plain) == 0, "a selective method changed the encoder before training");
                    if (method.Name == "spt") break;   // SPT's plan needs data: measured in the sample run
                    using (var id3 = (Id3Unmasking)SentimentSelective.Id3(classifier, 200, _ => throw new InvalidOperationException()).Owner)
                    {
                        Assert.Equal(14, id3.Masks.Names.Count);   // the 12 projections, layer 0's residual_proj and the pooler
                        Assert.Equal((long)(id3.Masks.TotalCount * SentimentSelective.BudgetShare), id3.Options.Budget);
                        Assert.Equal(0, id3.Masks.TrainedCount);
                        Assert.Equal(10, id3.Options.Interval);
                    }

                    break;
                case "compacter":
                case "compacterpp":
                    // PHM adapters: each adapter's factors and biases, the rule once (4³ = 64), the head; not the identity at
                    // init, but within the rule's 1e-4 scale. Per adapter on 512 wide (bottleneck 16): 512 + 16 + 16 down,
                    // 16 + 512 + 512 up = 1584.
                    long phm = classifier.InsertedAdapters().Sum(a => a.Adapter.parameters().Sum(p => p.numel()));
                    Assert.Equal(method.Name == "compacter" ? 4 : 2, classifier.InsertedAdapters().Count());
                    Assert.Equal(classifier.InsertedAdapters().Count() * 1584, phm);
                    Assert.Equal(64, classifier.SharedParameters().Single().Parameter.numel());
                    Assert.Equal(phm + 64 + head, count);
                    Assert.True(MaxDifference(output, plain) < 1e-3, $"fresh {method.Name} adapters moved the encoder too far");
                    break;
                case "houlsby":
                case "pfeiffer":
                case "parallel":
                    // Inserted after the encoder's sub-layers: they and the head train; the zero up projections leave it unchanged.
                    long inserted = classifier.InsertedAdapters().Sum(a => a.Adapter.parameters().Sum(p => p.numel()));
                    Assert.Equal(inserted + head, count);
                    Assert.Equal(method.Name == "houlsby" ? 4 : 2, classifier.InsertedAdapters().Count());
                    Assert.True(MaxDifference(output, plain) == 0, $"fresh {method.Name} adapters changed the encoder");
                    if (method.Name == "houlsby") Assert.Equal(134_274 - head, inserted);
                    break;
                case "prefix":
                case "mam":
                    // A prefix in each of the 2 layers' attention (MAM: and a parallel adapter beside each FFN); with the head,
                    // that is all that trains. PEFT's prefix is not the identity at init: it reaches the output at once.
                    long prefixed = classifier.InsertedAdapters().Sum(a => a.Adapter.parameters().Sum(p => p.numel()));
                    Assert.Equal(prefixed + head, count);
                    Assert.Equal(method.Name == "mam" ? 4 : 2, classifier.InsertedAdapters().Count());
                    Assert.True(MaxDifference(output, plain) > 1e-4, $"the {method.Name} prefix does not reach the output");
                    break;
                case "meft":
                    // Every block but USE-lite's widening first layer gets a reversible and a feed-forward adapter (d = 512, r = 8).
                    var meft = classifier.MeftOf()!;
                    Assert.Equal(1, meft.First);
                    Assert.Equal((UseLiteConfig.Layers - 1) * method.Meft!.CountParameters(512) + head, count);
                    break;
                case "adaption":
                    // A prompt of 10 tokens and a zero gate in each of the two attentions (the 256- and 512-wide layers).
                    Assert.Equal(2, classifier.InsertedAdapters().Count());
                    Assert.Equal(10 * 256 + 1 + 10 * 512 + 1 + head, count);
                    Assert.True(MaxDifference(output, plain) == 0, "zero gates changed the encoder");
                    break;
                case "lofit":
                    // Stage 1: scales on every head of both attentions (4 heads of 64, then of 128), N(0, 1e-3): close to the base.
                    Assert.Equal(2, classifier.InsertedAdapters().Count());
                    Assert.Equal(256 + 512 + head, count);
                    Assert.True(MaxDifference(output, plain) < 1e-2, "fresh LoFiT scales moved the encoder too far");
                    // Stage 2: offsets on 10% of the 8 heads (one head, the one with the largest scales), and the head.
                    method.SecondStage!(classifier);
                    var offsets = Assert.Single(classifier.InsertedAdapters().Select(a => a.Adapter).OfType<LoFiTAdapter>());
                    Assert.Single(offsets.Heads);
                    Assert.Equal(offsets.Geometry.HeadDim + head, classifier.TrainableParameters().Sum(p => p.numel()));
                    break;
                case "prompt":
                    Assert.Equal(SentimentMethods.PromptTokens, classifier.VirtualTokenCount());
                    Assert.Equal(SentimentMethods.PromptTokens * UseLiteConfig.EmbeddingDim + head, count);
                    Assert.True(MaxDifference(output, plain) > 1e-3, "the prompt does not reach the output");
                    break;
                case "dept":
                    // A short prompt plus the r 4 table over 64 positions; B starts at zero, the prompt reaches the output.
                    Assert.Equal(SentimentMethods.PromptTokens / 2, classifier.VirtualTokenCount());
                    Assert.Equal(SentimentMethods.DePTLength, classifier.RequiredInputLength());
                    Assert.Equal(((SentimentMethods.PromptTokens / 2) + 4) * UseLiteConfig.EmbeddingDim + (SentimentMethods.DePTLength * 4) + head, count);
                    Assert.True(MaxDifference(output, plain) > 1e-3, "the prompt does not reach the output");
                    break;
                case "ptuning":
                    // The encoder trains (table V x d, Linear(d, h), Linear(h, h), Linear(h, d)); its output is the prompt.
                    const long ptDim = UseLiteConfig.EmbeddingDim, ptHidden = SentimentMethods.PTuningHidden;
                    Assert.Equal(SentimentMethods.PromptTokens, classifier.VirtualTokenCount());
                    Assert.Equal((SentimentMethods.PromptTokens * ptDim) + (ptDim * ptHidden) + ptHidden + (ptHidden * ptHidden) + ptHidden + (ptHidden * ptDim) + ptDim + head, count);
                    Assert.True(MaxDifference(output, plain) > 1e-3, "the prompt does not reach the output");
                    break;
                default:
                    // A newly registered adapter method: it trains its adapter (all but the tensors the adapter keeps frozen,
                    // such as SVFit's singular vectors, plus the trainable tensors its layers share, such as VB-LoRA's
                    // vector bank, counted once) and the head, nothing else.
                    long adapterTrainable = classifier.AdaptedLayers().SelectMany(l => l.Layer.Adapters).Sum(a => a.TrainableParameterCount);
                    long shared = classifier.SharedParameters().Sum(s => s.Parameter.numel());
                    Assert.Equal(adapterTrainable + shared + head, count);
                    break;
            }
        }
    }

    [Fact]
    public async Task With_the_prompt_active_padding_does_not_change_a_sentence_embedding()
    {
        using var model = await UseLiteModel.LoadAsync(new NpmPackageCache());
        model.Encoder.ApplyTargets(new PeftTargets(UseLiteTargets.PromptEmbedding, new PromptTuningOptions(SentimentMethods.PromptTokens)));
        float[] batched = Run(model);
        for (int i = 0; i < Texts.Length; i++)
        {
            float[] alone = model.Embed(Texts[i]);
            double difference = alone.Select((v, j) => Math.Abs(v - batched[i * alone.Length + j])).Max();
            Assert.True(difference < 1e-5, $"text {i}: max |alone - batched| = {difference}");
        }
    }
}

/// <summary>The table's statistics: t quantiles, the interval over seeds, the binomial error, the supported orderings.</summary>
public sealed class SentimentStatisticsTests
{
    [Fact]
    public void T_quantiles_match_the_table_and_approach_the_normal()
    {
        Assert.Equal(4.303, SentimentStatistics.TQuantile975(2));
        Assert.Equal(2.042, SentimentStatistics.TQuantile975(30));
        Assert.Equal(2.0395, SentimentStatistics.TQuantile975(31), 3);    // exact 2.0395
        Assert.Equal(1.9840, SentimentStatistics.TQuantile975(100), 3);   // exact 1.9840
        Assert.Throws<ArgumentOutOfRangeException>(() => SentimentStatistics.TQuantile975(0));
    }

    [Fact]
    public void Interval_is_mean_plus_minus_t_times_the_standard_error()
    {
        var interval = SentimentStatistics.Interval([0.88, 0.89, 0.90]);
        Assert.Equal(0.89, interval.Mean, 12);
        Assert.Equal(0.01, interval.StandardDeviation, 12);
        Assert.Equal(4.303 * 0.01 / Math.Sqrt(3), interval.HalfWidth, 12);
        Assert.True(interval.HasInterval);
        var one = SentimentStatistics.Interval([0.87]);
        Assert.False(one.HasInterval);
        Assert.True(double.IsNaN(one.HalfWidth));
        Assert.Equal(0.0133, SentimentStatistics.BinomialStandardError(0.88, 597), 4);
    }

    [Fact]
    public void Only_non_overlapping_intervals_are_ordered()
    {
        var low = SentimentStatistics.Interval([0.870, 0.872, 0.874]);      // [0.867, 0.877]
        var high = SentimentStatistics.Interval([0.885, 0.888, 0.891]);     // [0.881, 0.895]
        var wide = SentimentStatistics.Interval([0.86, 0.88, 0.90]);        // overlaps both
        var single = SentimentStatistics.Interval([0.99]);
        var orderings = SentimentStatistics.SupportedOrderings([("low", low), ("high", high), ("wide", wide), ("single", single)]);
        Assert.Equal(new[] { ("high", "low") }, orderings);
    }
}
