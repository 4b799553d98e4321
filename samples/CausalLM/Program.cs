using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CausalLM;
using Peft;
using Peft.Checkpoints;
using Peft.Models.Llama;
using Peft.Serialization;
using Peft.Text;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

// Causal-LM sample: adapt (--method: LoRA by default, or prefix tuning, an adaption prompt, DePT, P-tuning; CausalLmMethods.cs) a Llama-layout or GPT-2 checkpoint (a local Hugging Face directory, its family read from
// config.json's model_type, or a tiny random one made here) to State of the Union addresses or to the user's own text
// (--data FILE: plain text or JSONL), then show perplexity and a greedy continuation before/after, save the adapter in
// PEFT's layout and check that base + adapter reloaded into a fresh model give the same logits bit for bit.

var checkpoint = new Option<string?>("--checkpoint") { Description = "A Hugging Face directory (config.json + safetensors, sharded or not) whose model_type is llama, mistral, qwen2 or gpt2. Without it a tiny random checkpoint is created under --output." };
var family = new Option<string?>("--family") { Description = "gpt2 or llama: the family of the tiny random checkpoint (default llama). With --checkpoint, config.json's model_type decides." };
var tokenizerName = new Option<string>("--tokenizer") { Description = "gpt2 (GPT-2 BPE, 50257 ids), bytes (UTF-8 bytes, 256 ids), or a tokenizer folder (tokenizer.model, vocab.json + merges.txt, *.tiktoken or vocab.txt).", DefaultValueFactory = _ => "gpt2" };
var steps = new Option<int>("--steps") { Description = "LoRA training steps.", DefaultValueFactory = _ => 120 };
var output = new Option<string>("--output") { Description = "Where the (random) base checkpoint and the adapter are written.", DefaultValueFactory = _ => Path.Combine("out", "causal-lm") };
var learningRate = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warmup + cosine).", DefaultValueFactory = _ => 1e-2 };
var blockSize = new Option<int>("--block-size") { Description = "Tokens per training example.", DefaultValueFactory = _ => 64 };
var batchSize = new Option<int>("--batch-size") { Description = "Examples per step.", DefaultValueFactory = _ => 8 };
var seed = new Option<int>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 42 };
var data = new Option<string?>("--data") { Description = "Train and evaluate on this file instead of the State of the Union addresses: UTF-8 plain text (the whole file is one document) or JSONL (.jsonl/.json, or a first line that is a JSON object: one document per line, its text in --text-field). The last 10% of its blocks are held out for validation." };
var textField = new Option<string?>("--text-field") { Description = "The JSONL field that holds each document's text (default \"text\"); only with a JSONL --data file." };
var prompt = new Option<string?>("--prompt") { Description = "The text whose greedy continuation is shown before and after training (default: \"The state of the Union is\", or with --data the first words of the held-out text)." };
var method = new Option<string>("--method") { Description = $"What to train: {string.Join(", ", CausalLmMethods.All.Select(m => m.Name))} (default lora).", DefaultValueFactory = _ => "lora" };
var targetModules = new Option<string?>("--target-modules") { Description = "Choose the LoRA layers by configuration, as PEFT's target_modules: \"all-linear\" or comma-separated names (q_proj,k_proj,v_proj,o_proj; c_attn,c_proj,c_fc). Default: the family's PEFT defaults (q_proj,v_proj; c_attn)." };
var fuseSiblings = new Option<bool>("--fuse-siblings") { Description = "Run each attention's adapted q/k/v projections as one product (model.FuseSiblingProjections, docs/usage.md section 5): the same function, measured 3-5% faster for a q/k/v block on CPU." };
var tableLearningRate = new Option<double>("--table-lr") { Description = "DePT only: the position table's peak learning rate (the prompt trains at --lr).", DefaultValueFactory = _ => 1e-3 };
var root = new RootCommand("Peft for .NET causal-LM sample: LoRA on q_proj/v_proj of a Llama-layout checkpoint or on c_attn of a GPT-2 one, trained on State of the Union addresses or on your own text (--data).")
{
    checkpoint, family, tokenizerName, data, textField, prompt, steps, output, learningRate, blockSize, batchSize, seed, method, targetModules, tableLearningRate,
    fuseSiblings,
};
root.SetAction(async (parse, cancellationToken) =>
{
    var options = new CausalLmOptions(parse.GetValue(checkpoint), parse.GetValue(family), parse.GetValue(tokenizerName)!, parse.GetValue(steps), parse.GetValue(output)!,
        parse.GetValue(learningRate), parse.GetValue(blockSize), parse.GetValue(batchSize), parse.GetValue(seed), parse.GetValue(targetModules),
        parse.GetValue(data), parse.GetValue(textField), parse.GetValue(prompt), parse.GetValue(method)!, parse.GetValue(tableLearningRate),
        parse.GetValue(fuseSiblings));
    return await CausalLmRun.RunAsync(options, cancellationToken);
});
return await root.Parse(args).InvokeAsync();

internal sealed record CausalLmOptions(string? Checkpoint, string? Family, string Tokenizer, int Steps, string Output, double LearningRate, int BlockSize, int BatchSize, int Seed, string? TargetModules = null,
    string? Data = null, string? TextField = null, string? Prompt = null, string Method = "lora", double TableLearningRate = 1e-3,
    bool FuseSiblings = false)
;

internal static class CausalLmRun
{
    /// <summary>Validation is capped so evaluation stays a few seconds on 2 cores.</summary>
    private const int ValidationBlocks = 64;
    private const int NewTokens = 24;
    private const string SotuPrompt = "The state of the Union is";
    private const int PromptWords = 6;

    public static async Task<int> RunAsync(CausalLmOptions options, CancellationToken cancellationToken)
    {
        var total = Stopwatch.StartNew();
        var device = PeftDevice.Default;
        Console.WriteLine($"device: {device.type}, threads: {get_num_threads()}");

        var method = CausalLmMethods.Find(options.Method);
        if (method is null)
        {
            Console.Error.WriteLine($"--method {options.Method} is not one of {string.Join(", ", CausalLmMethods.All.Select(m => m.Name))}.");
            return 2;
        }
        if (options.TargetModules is not null && !method.UsesTargets)
        {
            Console.Error.WriteLine($"--target-modules chooses LoRA's layers; --method {method.Name} does not take target modules: leave it out.");
            return 2;
        }
        if (options.Family is not null and not "gpt2" and not "llama")
        {
            Console.Error.WriteLine($"--family must be gpt2 or llama, not {options.Family}.");
            return 2;
        }
        if (options.Checkpoint is not null && options.Family is not null && CausalLm.FamilyOf(options.Checkpoint) != options.Family)
        {
            Console.Error.WriteLine($"--family {options.Family} disagrees with {options.Checkpoint}/config.json (model_type says {CausalLm.FamilyOf(options.Checkpoint)}); leave --family out with --checkpoint.");
            return 2;
        }

        // The user's file is read before anything is fetched or created, so a problem with it costs nothing.
        DataFileText? userText = null;
        if (options.TextField is not null && options.Data is null)
        {
            Console.Error.WriteLine("--text-field names the text field of a JSONL --data file; give --data FILE too, or leave --text-field out.");
            return 2;
        }
        if (options.Data is not null)
        {
            try
            {
                userText = DataFile.Read(options.Data, options.TextField ?? "text");
            }
            catch (DataFileException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
            if (options.TextField is not null && userText.Format != DataFormat.Jsonl)
            {
                Console.Error.WriteLine($"--data {options.Data} is read as plain text, so --text-field does not apply: leave it out, or name the file .jsonl if it is JSON Lines.");
                return 2;
            }
        }

        var codec = await TextCodec.CreateAsync(options.Tokenizer, cancellationToken);
        Console.WriteLine($"tokenizer: {codec.Description}");

        // 1. Data: documents separated by the end-of-text id (GPT-2), cut into blocks; labels already shifted.
        var sw = Stopwatch.StartNew();
        IReadOnlyList<TokenizedExample> train;
        List<TokenizedExample> validation;
        string promptText;
        if (userText is not null)
        {
            var tokens = Stream(codec, userText.Documents);
            DatasetSplit<TokenizedExample> split;
            try
            {
                split = DataFile.SplitBlocks(userText.Path, tokens, options.BlockSize, codec.Description);
            }
            catch (DataFileException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
            train = split.Train;
            validation = split.Validation.Take(ValidationBlocks).ToList();
            string what = userText.Format == DataFormat.Jsonl
                ? $"JSONL, {userText.Documents.Count:N0} documents from field \"{options.TextField ?? "text"}\""
                : "plain text";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"data: {userText.Path} ({what}), {userText.Characters:N0} characters, {tokens.Count:N0} tokens: {train.Count:N0} training blocks, {split.Validation.Count:N0} held-out blocks (the last {DataFile.ValidationFraction * 100:F0}%; {validation.Count} used for validation) of {options.BlockSize} tokens; tokenised in {sw.Elapsed.TotalSeconds:F1} s"));
            // The block may start inside a word, so the prompt starts at its second word; text without spaces
            // (Chinese, Japanese) has no second word, and then the block's first 8 tokens are the prompt.
            var heldOut = split.Validation[0].InputIds;
            string words = FirstWords(codec.Decode(heldOut.Take(8 * PromptWords)), skip: 1, PromptWords);
            // (A byte-level block can also start inside a character: its leading U+FFFD are dropped.)
            string firstTokens = codec.Decode(heldOut.Take(8));
            promptText = options.Prompt ?? (words.Length > 0 ? words : firstTokens.TrimStart('\uFFFD') is { Length: > 0 } clean ? clean : firstTokens);
        }
        else
        {
            var sotu = await Sotu.LoadAsync(cancellationToken);
            train = CausalLmData.Blocks(Stream(codec, sotu.Train), options.BlockSize);
            validation = CausalLmData.Blocks(Stream(codec, sotu.Validation), options.BlockSize).Take(ValidationBlocks).ToList();
            Console.WriteLine($"State of the Union (1946 on): {train.Count:N0} training blocks, {validation.Count} validation blocks of {options.BlockSize} tokens; tokenised in {sw.Elapsed.TotalSeconds:F1} s");
            promptText = options.Prompt ?? SotuPrompt;
        }

        // 2. The base checkpoint: the given directory, or a tiny random one written and read back through the same path.
        string familyName = options.Family ?? "llama";
        string baseDir = options.Checkpoint
            ?? CausalLm.CreateRandomCheckpoint(familyName, Path.Combine(options.Output, $"tiny-random-{familyName}"), codec.VocabSize, options.Seed);
        sw.Restart();
        using var lm = CausalLm.FromPretrained(baseDir);
        var model = lm.Module;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loaded {baseDir} in {sw.Elapsed.TotalSeconds:F1} s: {lm.Description}"));
        if (lm.VocabSize < codec.VocabSize)
        {
            Console.Error.WriteLine($"The checkpoint's vocabulary ({lm.VocabSize}) is smaller than the tokenizer's ({codec.VocabSize}): use the checkpoint's own tokenizer files (--tokenizer DIR) or --tokenizer bytes.");
            return 2;
        }
        if (options.BlockSize + NewTokens > lm.MaxPositions)
        {
            Console.Error.WriteLine($"--block-size {options.BlockSize} does not fit the model's {lm.MaxPositions} positions.");
            return 2;
        }
        {
            // PEFT's LoraConfig on a stock model, which declares no adapter: the family's default targets (PEFT's
            // constants.py: q_proj/v_proj for Llama, c_attn for GPT-2), or --target-modules. Generated code wraps the
            // chosen members.
            var targets = options.TargetModules is { } spec
                ? TargetModules.FromPeft(
                    spec.Equals(TargetModules.AllLinearValue, StringComparison.OrdinalIgnoreCase) ? spec : null,
                    spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                : lm.DefaultLoRATargets;
            try
            {
                Console.WriteLine(method.Apply(lm, targets, options));
            }
            catch (PeftConfigurationException ex)
            {
                Console.Error.WriteLine(ex.Message);
                return 2;
            }
        }
        model.to(device);
        model.PrintTrainableParameters();
        if (options.FuseSiblings)
        {
            FuseAttentionProjections(model);
        }

        var prompt = codec.Encode(promptText);
        if (prompt.Count == 0 || prompt.Count + NewTokens > lm.MaxPositions)
        {
            Console.Error.WriteLine($"--prompt \"{promptText}\" is {prompt.Count} tokens; it needs 1 to {lm.MaxPositions - NewTokens} (the model's {lm.MaxPositions} positions less the {NewTokens} generated): pass a shorter or non-empty --prompt.");
            return 2;
        }
        double lossBefore = ValidationLoss(model, validation, device);

        // DePT's table covers exactly --block-size positions; a growing generation has every other length.
        string textBefore = method.Generates ? Continue(lm, codec, prompt, device) : $" [continuation skipped: {method.Name} needs inputs of exactly --block-size tokens]";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"before: validation loss {lossBefore:F4}, perplexity {Math.Exp(lossBefore):F2}"));
        Console.WriteLine($"before: {Quote(promptText + textBefore)}");

        // 3. Training: only the method's parameters (LoRA on q_proj/v_proj or GPT-2's c_attn; the prefix) train.
        sw.Restart();
        Train(model, train, options, device);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{method.Name} training: {options.Steps} steps in {sw.Elapsed.TotalSeconds:F1} s"));
        double lossAfter = ValidationLoss(model, validation, device);
        string textAfter = method.Generates ? Continue(lm, codec, prompt, device) : " [continuation skipped]";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"after:  validation loss {lossAfter:F4}, perplexity {Math.Exp(lossAfter):F2}"));
        Console.WriteLine($"after:  {Quote(promptText + textAfter)}");

        // 4. Save the adapter (PEFT layout), reload base + adapter into a fresh model, compare logits exactly.
        string adapterDir = Path.Combine(options.Output, "adapter");
        method.Save(lm, adapterDir, Path.GetFullPath(baseDir));
        Console.WriteLine($"saved {adapterDir}/{{{AdapterFiles.ConfigFileName}, {AdapterFiles.WeightsFileName}}}");

        using var probe = Ids(validation.Take(4).ToList(), e => e.InputIds).to(device);
        model.eval();
        using var trainedLogits = Logits(model, probe);
        Seeding.SetSeed(options.Seed + 1000); // a different init for the fresh model's adapter, to show the files carry everything
        using var fresh = CausalLm.FromPretrained(baseDir);
        fresh.Module.to(device);
        // The fresh stock model has no adapter: AdapterFiles.Load creates it from the file's target_modules, as PEFT's
        // PeftModel.from_pretrained does.
        method.Load(fresh, adapterDir);
        if (options.FuseSiblings)
        {
            FuseAttentionProjections(fresh.Module); // the same products as the trained model, so the logits compare bit for bit
        }

        fresh.Module.eval();
        using var reloadedLogits = Logits(fresh.Module, probe);
        double reloadDiff = (reloadedLogits - trainedLogits).abs().max().item<float>();
        bool identical = reloadedLogits.shape.SequenceEqual(trainedLogits.shape) && reloadedLogits.eq(trainedLogits).all().item<bool>();
        Console.WriteLine($"fresh model + loaded adapter vs trained model: max |diff| = {reloadDiff:E2}, bitwise identical: {identical}");

        Console.WriteLine($"total: {total.Elapsed.TotalSeconds:F1} s");
        bool ok = lossAfter < lossBefore && identical;
        Console.WriteLine(ok ? "causal-lm: OK" : "causal-lm: FAILED (see the numbers above)");
        return ok ? 0 : 1;
    }

    /// <summary>Links each attention's adapted q/k/v (the MLP's gate/up did not gain on CPU: docs/benchmarks.md) and says
    /// which groups run as one product.</summary>
    private static void FuseAttentionProjections(nn.Module model)
    {
        var report = model.FuseSiblingProjections((path, _) => path.EndsWith("self_attn", StringComparison.Ordinal));
        Console.WriteLine($"sibling projections: {report.Linked.Count} groups run as one product"
            + (report.Linked.Count > 0 ? $" ({string.Join(", ", report.Linked.Select(g => g.ModulePath + ": " + string.Join("/", g.Members)).Take(2))}{(report.Linked.Count > 2 ? ", ..." : "")})" : ""));
        foreach (var (path, members, reason) in report.Skipped)
        {
            Console.WriteLine($"  not linked: {path} [{string.Join(", ", members)}]: {reason}");
        }
    }

    private static List<int> Stream(TextCodec codec, IEnumerable<string> documents)
    {
        var stream = new List<int>();
        foreach (string document in documents)
        {
            stream.AddRange(codec.Encode(document));
            if (codec.SeparatorId is int separator) stream.Add(separator);
        }
        return stream;
    }

    private static Tensor Ids(IReadOnlyList<TokenizedExample> examples, Func<TokenizedExample, IReadOnlyList<int>> select)
    {
        int length = select(examples[0]).Count;
        var data = new long[examples.Count * length];
        for (int e = 0; e < examples.Count; e++)
        {
            var ids = select(examples[e]);
            for (int t = 0; t < length; t++) data[e * length + t] = ids[t];
        }
        return tensor(data, new long[] { examples.Count, length });
    }

    private static Tensor Loss(nn.Module<Tensor, Tensor> model, IReadOnlyList<TokenizedExample> batch, Device device, nn.Reduction reduction)
    {
        var x = Ids(batch, e => e.InputIds).to(device);
        var y = Ids(batch, e => e.TokenLabels!).to(device);
        using var all = model.call(x);
        var logits = model.StripVirtualTokens(all);   // a prompt's positions carry no label
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), y.view(-1), ignore_index: TokenizedExample.IgnoreIndex, reduction: reduction);
    }

    /// <summary>Mean cross-entropy per token over the validation blocks.</summary>
    private static double ValidationLoss(nn.Module<Tensor, Tensor> model, IReadOnlyList<TokenizedExample> blocks, Device device)
    {
        model.eval();
        using var _ = no_grad();
        double sum = 0;
        long tokens = 0;
        foreach (var chunk in blocks.Chunk(16))
        {
            using var scope = NewDisposeScope();
            sum += Loss(model, chunk, device, nn.Reduction.Sum).item<float>();
            tokens += chunk.Sum(e => e.InputIds.Count);
        }
        return sum / tokens;
    }

    /// <summary>A greedy continuation with the KV cache (the prompt runs once, then one position per step).</summary>
    private static string Continue(CausalLm model, TextCodec codec, IReadOnlyList<int> prompt, Device device)
    {
        using var scope = NewDisposeScope();
        var ids = tensor(prompt.Select(i => (long)i).ToArray(), new long[] { 1, prompt.Count }).to(device);
        var all = model.Generate(ids, NewTokens, new GenerationOptions { Greedy = true });
        var added = all[0].slice(0, prompt.Count, all.shape[1], 1).cpu().data<long>().Select(i => (int)i).ToArray();
        return codec.Decode(added);
    }

    private static Tensor Logits(nn.Module<Tensor, Tensor> model, Tensor ids)
    {
        using var _ = no_grad();
        return model.call(ids);
    }

    private static void Train(nn.Module<Tensor, Tensor> model, IReadOnlyList<TokenizedExample> blocks, CausalLmOptions options, Device device)
    {
        model.train();
        var random = new Random(options.Seed);
        var trainingOptions = new TrainingOptions
        {
            LearningRate = options.LearningRate,
            TotalSteps = options.Steps,
            WarmupSteps = Math.Max(1, options.Steps / 20),
            MinLearningRateRatio = 0.1,
            MaxGradNorm = 1.0,
            LogEvery = Math.Max(1, options.Steps / 5),
            ParameterLearningRate = CausalLmMethods.Find(options.Method)!.LearningRates?.Invoke(model, options),
        };
        using var trainer = new AdapterTrainer(model.TrainableParameters(), trainingOptions, new ConsoleProgress(options.Method));
        for (int step = 0; step < options.Steps; step++)
        {
            var batch = Enumerable.Range(0, options.BatchSize).Select(_ => blocks[random.Next(blocks.Count)]).ToList();
            trainer.TrainStep(() => Loss(model, batch, device, nn.Reduction.Mean));
        }
    }

    /// <summary><paramref name="count"/> whitespace-separated words of <paramref name="text"/> after the first <paramref name="skip"/>, joined by spaces.</summary>
    private static string FirstWords(string text, int skip, int count) =>
        string.Join(' ', text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Skip(skip).Take(count));

    private static string Quote(string text) => "\"" + text.Replace("\n", "\\n", StringComparison.Ordinal) + "\"";

    /// <summary>Prints progress on the training thread (Progress&lt;T&gt; would post to the thread pool and reorder lines).</summary>
    private sealed class ConsoleProgress(string method) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress p) =>
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  [{method}] step {p.Step,4}/{p.TotalSteps} loss {p.Loss:F4} lr {p.LearningRate:E2} |g| {p.GradNorm:F3} {p.Elapsed.TotalSeconds:F1}s"));
    }
}
