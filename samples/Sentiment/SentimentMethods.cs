using Peft;
using Peft.Models.UseLite;

namespace Sentiment;

/// <summary>Which parameters of the classifier a method trains.</summary>
public enum Trains
{
    /// <summary>The adapter the method's targets add, plus the <c>[Trainable]</c> head (the encoder's weights stay frozen).</summary>
    AdapterAndHead,

    /// <summary>The head only: the encoder is frozen and has no adapter (a linear probe).</summary>
    Head,

    /// <summary>Every weight of the encoder and the head (full fine-tuning).</summary>
    Everything,

    /// <summary>The base weights the method's <see cref="SentimentMethod.Freezing"/> leaves trainable, and the head: selected
    /// base weights train (layer freezing freezes the embeddings and bottom blocks, the rest is fine-tuned).</summary>
    Unfrozen,

    /// <summary>Chosen entries of the encoder's own weights (<see cref="SentimentMethod.Selective"/>: ID³, SPT) and the head;
    /// the weights are masked when the run starts, since the choice needs the run's length or data. Saved as model weights.</summary>
    Masked,
    /// <summary>The adapters the method's <see cref="SentimentMethod.Insert"/> inserts into the encoder's blocks (bottleneck
    /// adapters after sub-layers, a key/value prefix inside attention), plus the head; saved with the classifier's weights.</summary>
    Inserted,

}

/// <summary>
/// One way of fine-tuning the sentiment classifier: one line in <see cref="SentimentMethods.All"/> says its
/// <c>--method</c> name, its row in the table, its learning rate, whether the quick default run includes it, how it is
/// applied to the USE-lite encoder (configuration targets, as PEFT's <c>target_modules</c>), which parameters train, and
/// so how it is saved: a method with targets trains an adapter and is saved as a PEFT adapter directory, one without
/// trains base weights and is saved as model weights.
/// </summary>
/// <param name="Name">The <c>--method</c> name (lower case), also the save subdirectory.</param>
/// <param name="DisplayName">The table's row name.</param>
/// <param name="LearningRate">The default AdamW peak learning rate (<c>--lr</c> overrides it).</param>
/// <param name="Quick">Whether the default run (no <c>--method</c>, no <c>--all</c>) includes the method.</param>
/// <param name="Targets">The adapter, applied to the classifier with <c>ApplyTargets</c>; null for methods without one.</param>
/// <param name="Trains">Which parameters train.</param>
public sealed record SentimentMethod(string Name, string DisplayName, double LearningRate, bool Quick, PeftTargets? Targets, Trains Trains)
{
    /// <summary>Whether the method trains an adapter, saved in PEFT's adapter layout (otherwise the classifier's weights are saved).</summary>
    public bool SavesAdapter => Targets is not null;

    /// <summary>QLoRA: the adapted layers' frozen weights are stored in this format once the adapter is applied (and again
    /// after a saved adapter is loaded), so the adapter trains over a quantized base. Null keeps the base dense.</summary>
    public QuantizationFormat? BaseQuantization { get; init; }

    /// <summary>A data-driven initialisation run on the first epoch's training batches (token ids and padding mask) after the
    /// adapter is applied and before the accuracy before training is measured (EVA's incremental PCA of the adapted layers'
    /// inputs, CorDA's input covariance); null for none. It may replace the adapters, so the trainable parameters are read
    /// again after it.</summary>
    public Action<SentimentClassifier, IReadOnlyList<(TorchSharp.torch.Tensor Ids, TorchSharp.torch.Tensor Mask)>>? Calibrate { get; init; }

    /// <summary>For <see cref="Trains.Unfrozen"/>: what the method freezes in the encoder's stack (<see cref="LayerFreezing"/>).</summary>
    public LayerFreezing? Freezing { get; init; }

    /// <summary>For <see cref="Trains.Masked"/>: builds the masks and their callback when the run starts.</summary>
    public SelectiveFactory? Selective { get; init; }

    /// <summary>DePT's second learning rate: the peak rate of its position tables (<c>lora_embedding_A/B</c>), while the
    /// prompt and the head train with <see cref="LearningRate"/>; null for one rate.</summary>
    public double? TableLearningRate { get; init; }

    /// <summary>A method without adapter that trains chosen entries of the encoder's weights with the head (<see cref="Trains.Masked"/>).</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="selective">Builds the masks (<see cref="SentimentSelective"/>).</param>
    /// <param name="quick">Whether the default run includes it.</param>
    public static SentimentMethod Masks(string name, string displayName, double learningRate, SelectiveFactory selective, bool quick = false)
        => new(name, displayName, learningRate, quick, null, Trains.Masked) { Selective = selective };
    /// <summary>For <see cref="Trains.Inserted"/>: inserts the method's adapters into the encoder's blocks (run on a fresh
    /// classifier before training, and before its saved weights are loaded).</summary>
    public Action<TorchSharp.torch.nn.Module>? Insert { get; init; }

    /// <summary>For a <see cref="Trains.Inserted"/> method that trains in two stages (LoFiT): <see cref="Insert"/> inserts the
    /// first stage's adapters; after <see cref="SecondStageShare"/>'s complement of the run's steps, this replaces them with the
    /// second stage's (e.g. from a selection the first stage's adapters give), and a fresh optimizer trains those and the head for
    /// the remaining steps: both stages inside the row's budget. Null: one stage.</summary>
    public Action<TorchSharp.torch.nn.Module>? SecondStage { get; init; }

    /// <summary>The share of the run's steps the second stage gets (with <see cref="SecondStage"/>).</summary>
    public double SecondStageShare { get; init; } = 0.5;

    /// <summary>For <see cref="Trains.Inserted"/>: writes what the model's weights do not hold (bottleneck adapters' files,
    /// with the tensors their layers share, such as Compacter's PHM rule) to a directory; null when the weights hold all.</summary>
    public Action<TorchSharp.torch.nn.Module, string>? SaveInserted { get; init; }

    /// <summary>For <see cref="Trains.Inserted"/>: inserts the adapters from what <see cref="SaveInserted"/> wrote, instead of
    /// <see cref="Insert"/>, before the model's weights are loaded.</summary>
    public Action<TorchSharp.torch.nn.Module, string>? LoadInserted { get; init; }

    /// <summary>A method that inserts bottleneck adapters after the encoder's sub-layers (<see cref="Trains.Inserted"/>)
    /// and trains them with the head; saved as model weights.</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="config">The adapters (<see cref="BottleneckConfig"/>).</param>
    /// <returns>The method.</returns>
    public static SentimentMethod Inserts(string name, string displayName, double learningRate, BottleneckConfig config)
        => Inserts(name, displayName, learningRate, model => model.AddBottleneckAdapters(config)) with
        {
            SaveInserted = (model, directory) => model.SaveBottleneckAdapters(directory),
            LoadInserted = (model, directory) => model.LoadBottleneckAdapters(directory),
        };

    /// <summary>A method that inserts adapters into the encoder's blocks with <paramref name="insert"/>
    /// (<see cref="Trains.Inserted"/>) and trains them with the head; saved as model weights.</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="insert">Inserts the adapters (e.g. <c>m =&gt; m.AddPrefixTuning(...)</c>).</param>
    /// <returns>The method.</returns>
    public static SentimentMethod Inserts(string name, string displayName, double learningRate, Action<TorchSharp.torch.nn.Module> insert)
        => new(name, displayName, learningRate, false, null, Trains.Inserted) { Insert = insert };

    /// <summary>For MEFT (<see cref="Reversible"/>, trained as <see cref="Trains.Inserted"/>): the configuration its
    /// <see cref="Insert"/> applies to the encoder's stack.</summary>
    public MeftConfig? Meft { get; init; }

    /// <summary>A method that makes the encoder's stack reversible with MEFT (its adapters are inserted adapters,
    /// <see cref="Trains.Inserted"/>) and trains them with the head; saved as model weights.</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="config">The configuration (<see cref="MeftConfig"/>).</param>
    /// <returns>The method.</returns>
    public static SentimentMethod Reversible(string name, string displayName, double learningRate, MeftConfig config)
        => Inserts(name, displayName, learningRate, model => model.AddMeft(config)) with { Meft = config };

    /// <summary>A method that inserts an adaption prompt into the encoder's attentions (<see cref="Trains.Inserted"/>) and
    /// trains it with the head; saved as model weights.</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="config">The prompt (<see cref="AdaptionPromptConfig"/>).</param>
    /// <returns>The method.</returns>
    public static SentimentMethod Inserts(string name, string displayName, double learningRate, AdaptionPromptConfig config)
        => Inserts(name, displayName, learningRate, model => model.AddAdaptionPrompt(config));

    /// <summary>LoFiT's two stages in one run (<see cref="SecondStage"/>): scales on every head of the encoder's attentions with
    /// the L1 term, then offsets on the <paramref name="headFraction"/> of heads with the largest scales; saved as model weights
    /// with the LoFiT directory (which says which heads hold offsets).</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="l1Lambda">Stage 1's L1 weight.</param>
    /// <param name="headFraction">The share of heads stage 2 trains.</param>
    /// <returns>The method.</returns>
    public static SentimentMethod LoFiT(string name, string displayName, double learningRate, double l1Lambda, double headFraction)
        => Inserts(name, displayName, learningRate, m => m.AddLoFiT(new LoFiTConfig(LoFiTComponents.Scale, l1Lambda), adapterName: "lofit-scales")) with
        {
            SecondStage = m =>
            {
                var heads = m.SelectHeads(headFraction, "lofit-scales");
                m.DeleteAdapter("lofit-scales");
                m.AddLoFiT(new LoFiTConfig(LoFiTComponents.Bias), heads);
            },
            SaveInserted = (m, directory) => m.SaveLoFiT(directory),
            LoadInserted = (m, directory) => m.LoadLoFiT(directory),
        };

    /// <summary>A method that adds an adapter on <paramref name="targets"/> and trains it with the head.</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="targets">The encoder modules to adapt (<see cref="UseLiteTargets"/>).</param>
    /// <param name="options">The method's options (<see cref="LoRAOptions"/>, <see cref="KroneckerOptions"/>, ...).</param>
    /// <param name="quick">Whether the default run includes it.</param>
    public static SentimentMethod Adapter(string name, string displayName, double learningRate, TargetModules targets, PeftAdapterOptions options, bool quick = false)
        => new(name, displayName, learningRate, quick, new PeftTargets(targets, options), Trains.AdapterAndHead);

    /// <summary>A method without adapter that trains base weights (<see cref="Trains.Head"/> or <see cref="Trains.Everything"/>).</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="trains">What trains.</param>
    /// <param name="quick">Whether the default run includes it.</param>
    public static SentimentMethod BaseWeights(string name, string displayName, double learningRate, Trains trains, bool quick = false)
        => new(name, displayName, learningRate, quick, null, trains);

    /// <summary>A method without adapter that freezes part of the encoder's stack and fine-tunes the rest with the head
    /// (<see cref="Trains.Unfrozen"/>); saved as model weights.</summary>
    /// <param name="name">The <c>--method</c> name.</param>
    /// <param name="displayName">The table's row name.</param>
    /// <param name="learningRate">The default learning rate.</param>
    /// <param name="freezing">What to freeze (<see cref="LayerFreezing"/>).</param>
    /// <param name="quick">Whether the default run includes it.</param>
    public static SentimentMethod Freezes(string name, string displayName, double learningRate, LayerFreezing freezing, bool quick = false)
        => new(name, displayName, learningRate, quick, null, Trains.Unfrozen) { Freezing = freezing };
}

/// <summary>The methods the sample compares: one registration line each.</summary>
public static class SentimentMethods
{
    /// <summary>EVA's data step on the training batches: the padding positions are left out of each layer's PCA (PEFT's
    /// attention-mask handling), with PEFT's default <see cref="EvaConfig"/>.</summary>
    /// <param name="classifier">The classifier, its EVA adapter applied.</param>
    /// <param name="batches">Token ids and padding masks.</param>
    public static void Eva(SentimentClassifier classifier, IReadOnlyList<(TorchSharp.torch.Tensor Ids, TorchSharp.torch.Tensor Mask)> batches)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        var result = classifier.InitializeEva(batches, (batch, capture) =>
        {
            capture.RowMask = batch.Mask;
            classifier.call(batch.Ids, batch.Mask).Dispose();
        });
        Console.Error.WriteLine($"  eva: {result.ForwardPasses} forward passes; ranks {string.Join(", ", result.Layers.Select(l => $"{l.Path} {l.Rank}"))}");
    }

    /// <summary>Calibration batches CorDA's covariance is taken from (the first of the first epoch's).</summary>
    public const int CorDABatches = 16;

    /// <summary>CorDA's calibration: the first <see cref="CorDABatches"/> batches run through the classifier with the adapters
    /// waiting, padding positions left out of the covariance (<c>model.PreprocessCorDA</c>).</summary>
    /// <param name="classifier">The configured classifier.</param>
    /// <param name="batches">The first epoch's batches.</param>
    public static void CorDA(SentimentClassifier classifier, IReadOnlyList<(TorchSharp.torch.Tensor Ids, TorchSharp.torch.Tensor Mask)> batches)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(batches);
        classifier.PreprocessCorDA(capture =>
        {
            foreach (var (ids, mask) in batches.Take(CorDABatches))
            {
                capture.RowMask = mask;
                classifier.call(ids, mask).Dispose();
            }
        });
    }

    /// <summary>Text the prompt is initialised from (PEFT's TEXT init).</summary>
    public const string PromptInitText = "is this review positive or negative";

    /// <summary>Virtual tokens of the prompt-tuning method.</summary>
    public const int PromptTokens = 8;

    /// <summary>Key/value positions of the prefix-tuning method.</summary>
    public const int PrefixTokens = 10;

    /// <summary>The hidden size of P-tuning's MLP prompt encoder.</summary>
    public const int PTuningHidden = 64;

    /// <summary>DePT's input length: every sentence is padded or truncated to it (its position table covers it).</summary>
    public const int DePTLength = 64;

    /// <summary>
    /// Every method, in the table's order. A new method is one line here: <c>SentimentMethod.Adapter(name, row, learning
    /// rate, UseLiteTargets.X, new XOptions(...))</c> for an adapter (saved in PEFT's layout, reloaded by
    /// <c>AdapterFiles.Load</c>), <c>SentimentMethod.BaseWeights(...)</c> otherwise; <c>quick: true</c> only while the default
    /// run stays around a minute on 2 cores (docs/sentiment.md, "Adding a method").
    /// </summary>
    public static IReadOnlyList<SentimentMethod> All { get; } =
    [
        SentimentMethod.BaseWeights("probe", "frozen linear probe", 1e-2, Trains.Head, quick: true),
        SentimentMethod.Adapter("lora", "LoRA (r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4), quick: true),
        SentimentMethod.Adapter("qlora", "QLoRA (NF4 base, LoRA r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4)) with { BaseQuantization = QuantizationFormat.NF4 },
        SentimentMethod.Adapter("pissa", "PiSSA (r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4, Init: LoRAInit.PiSSA)),
        SentimentMethod.Adapter("olora", "OLoRA (r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4, Init: LoRAInit.OLoRA)),
        SentimentMethod.Adapter("corda", "CorDA IPM (LoRA r 4, 12 projections, 16 calibration batches)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4, Init: LoRAInit.CorDA)) with { Calibrate = CorDA },
        SentimentMethod.Adapter("corda-kpm", "CorDA KPM (LoRA r 4, 12 projections, 16 calibration batches)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4, Init: LoRAInit.CorDA, CorDAMethod: CorDAMethod.Kpm)) with { Calibrate = CorDA },
        SentimentMethod.Adapter("loftq", "LoftQ (NF4 base, LoRA r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4, Init: LoRAInit.LoftQ)) with { BaseQuantization = QuantizationFormat.NF4 },
        SentimentMethod.Adapter("eva", "EVA (LoRA r 4 redistributed by explained variance, 12 projections)", 3e-3, UseLiteTargets.LoRA, new LoRAOptions(Rank: 4, Init: LoRAInit.EVA)) with { Calibrate = Eva },
        SentimentMethod.Adapter("lokr", "LoKr (r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new KroneckerOptions(Rank: 4)),
        SentimentMethod.Adapter("diffusekrona", "DiffuseKronA (full A ⊗ B, 12 projections)", 3e-3, UseLiteTargets.LoRA, new KroneckerOptions(Rank: 4, FullFactors: true)),
        SentimentMethod.Adapter("dora", "DoRA (r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new DoRAOptions(Rank: 4)),
        SentimentMethod.Adapter("loha", "LoHa (r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new LoHaOptions(Rank: 4)),
        SentimentMethod.Adapter("hira", "HiRA (r 4, 12 projections)", 3e-3, UseLiteTargets.LoRA, new HiRAOptions(Rank: 4)),
        SentimentMethod.Adapter("vera", "VeRA (r 64, 12 projections)", 1e-2, UseLiteTargets.LoRA, new VeRAOptions(Rank: 64)),
        SentimentMethod.Adapter("randlora", "RandLoRA (r 32, 12 projections)", 1e-3, UseLiteTargets.LoRA, new RandLoRAOptions(Rank: 32)),
        SentimentMethod.Adapter("vblora", "VB-LoRA (r 4, bank 256 x 256, 12 projections)", 1e-2, UseLiteTargets.LoRA, new VBLoRAOptions(Rank: 4)),
        SentimentMethod.Adapter("svfit", "SVFit (rank by 99% energy, 12 projections)", 1e-2, UseLiteTargets.LoRA, new SVFitOptions()),
        SentimentMethod.Adapter("loldu", "LoLDU (r 4, 12 projections)", 1e-2, UseLiteTargets.LoRA, new LoLDUOptions(Rank: 4)),
        SentimentMethod.Adapter("kasa", "KaSA (r 4, base truncated by 4 directions, with its regulariser, 12 projections)", 3e-3, UseLiteTargets.LoRA, new KaSAOptions(Rank: 4)),
        SentimentMethod.Adapter("soka", "SoKA (4 Kronecker terms from the Kronecker SVD, 12 projections)", 3e-3, UseLiteTargets.LoRA, new SoKAOptions(Rank: 4)),
        SentimentMethod.Adapter("ia3", "IA3 (k, v, fc2)", 1e-2, UseLiteTargets.IA3, new IA3Options(FeedForwardModules: UseLiteTargets.IA3FeedForward)),
        SentimentMethod.Adapter("bitfit", "BitFit (every bias)", 1e-2, UseLiteTargets.BitFit, new BitFitOptions()),
        SentimentMethod.Adapter("ssf", "SSF (12 projections, 4 norms)", 1e-2, UseLiteTargets.SSF, new SSFOptions()),
        SentimentMethod.Adapter("lntuning", "LayerNorm tuning (4 norms)", 1e-2, UseLiteTargets.LayerNormTuning, new LNTuningOptions()),
        SentimentMethod.Adapter("prompt", $"prompt tuning ({PromptTokens} virtual tokens)", 1e-2, UseLiteTargets.PromptEmbedding, new PromptTuningOptions(PromptTokens, PromptInitText), quick: true),
        SentimentMethod.Adapter("dept", $"DePT ({PromptTokens / 2} virtual tokens, r 4 table over {DePTLength} positions)", 1e-2, UseLiteTargets.PromptEmbedding,
            new DePTOptions(PromptTokens / 2, DePTLength, Rank: 4, Alpha: 4, InitText: PromptInitText)) with { TableLearningRate = 1e-3 },
        SentimentMethod.Adapter("ptuning", $"P-tuning ({PromptTokens} virtual tokens, MLP encoder h {PTuningHidden})", 3e-3, UseLiteTargets.PromptEmbedding,
            new PTuningOptions(PromptTokens, PTuningHidden)),
        SentimentMethod.Inserts("houlsby", "Houlsby adapters (rf 16, after attention and FFN)", 1e-3, BottleneckConfig.Houlsby()),
        SentimentMethod.Inserts("pfeiffer", "Pfeiffer adapters (rf 16, after FFN)", 1e-3, BottleneckConfig.Pfeiffer()),
        SentimentMethod.Inserts("parallel", "scaled parallel adapters (rf 2, s 4, beside FFN)", 1e-3, BottleneckConfig.ScaledParallel()),
        SentimentMethod.Inserts("compacter", "Compacter (PHM n 4, k 1, rf 32, after attention and FFN)", 3e-3, BottleneckConfig.Compacter()),
        SentimentMethod.Inserts("compacterpp", "Compacter++ (PHM n 4, k 1, rf 32, after FFN)", 3e-3, BottleneckConfig.CompacterPlusPlus()),
        SentimentMethod.Inserts("prefix", $"prefix tuning ({PrefixTokens} positions, MLP 256)", 1e-3, m => m.AddPrefixTuning(new PrefixTuningConfig(PrefixTokens, Projection: true, EncoderHiddenSize: 256))),
        SentimentMethod.Inserts("mam", "MAM (prefix 30 via MLP 800 + scaled parallel rf 2, s 4)", 1e-3, m => m.AddMamAdapter()),
        SentimentMethod.Reversible("meft", "MEFT1 (reversible, bottleneck 8, lambda = beta = 0.1)", 1e-3, new MeftConfig(AdapterBottleneckDim: 8)),
        SentimentMethod.Inserts("adaption", "adaption prompt (10 tokens, both layers, zero-init gate)", 1e-2, new AdaptionPromptConfig(AdapterLen: 10, AdapterLayers: 2)),
        SentimentMethod.LoFiT("lofit", "LoFiT (scales on all 8 heads with L1 5e-3, then offsets on the top 10%)", 1e-2, l1Lambda: 5e-3, headFraction: LoFiTConfig.DefaultHeadFraction),
        SentimentMethod.Freezes("freeze-bottom", "Telly-1 (embeddings + bottom layer frozen)", 1e-4, new LayerFreezing(bottom: 1)),
        SentimentMethod.Masks("spt", "SPT (1% of the encoder's matrix entries by sensitivity; LoRA r 8 where dense)", 1e-3, SentimentSelective.Spt),
        SentimentMethod.Masks("id3", "ID³ (1% of the encoder's matrix entries, unmasked in 10 steps)", 1e-3, SentimentSelective.Id3),
        SentimentMethod.BaseWeights("full", "full fine-tuning", 1e-4, Trains.Everything, quick: true),
    ];

    /// <summary>The methods of the default run (<see cref="SentimentMethod.Quick"/>).</summary>
    public static IReadOnlyList<SentimentMethod> Quick => All.Where(m => m.Quick).ToList();

    /// <summary>The method named <paramref name="name"/> (case-insensitive), or null.</summary>
    /// <param name="name">A <c>--method</c> name.</param>
    public static SentimentMethod? Find(string name) => All.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The method named <paramref name="name"/>.</summary>
    /// <param name="name">A <c>--method</c> name.</param>
    /// <exception cref="ArgumentException">No method has that name (the message lists them).</exception>
    public static SentimentMethod Get(string name) => Find(name)
        ?? throw new ArgumentException($"Unknown method '{name}'. Methods: {string.Join(", ", All.Select(m => m.Name))}.", nameof(name));
}
